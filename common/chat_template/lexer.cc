#include "common/chat_template/lexer.h"

#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template/python_text.h"
#include "common/tokenizer/utf8.h"

namespace flatfleet::chat_template {
namespace {

enum class TagKind { kVariable, kBlock, kComment };

bool IsNameStart(char c) { return absl::ascii_isalpha(c) || c == '_'; }
bool IsNameChar(char c) { return absl::ascii_isalnum(c) || c == '_'; }

// Length of the Python whitespace run (str.isspace()) starting at pos.
size_t WhitespaceRun(std::string_view text, size_t pos) {
  size_t start = pos;
  size_t length;
  while (pos < text.size() && IsPythonWhitespaceAt(text, pos, &length)) pos += length;
  return pos - start;
}

std::string_view RstripPython(std::string_view text) { return PythonStrip(text, false, true); }

class Lexer {
 public:
  Lexer(std::string_view source, const LexerOptions& options)
      : source_(source), options_(options) {}

  absl::StatusOr<std::vector<Token>> Run() {
    bool line_starting = true;
    while (pos_ < source_.size()) {
      size_t tag = FindTagStart(pos_);
      std::string_view text = source_.substr(pos_, tag - pos_);
      if (tag == source_.size()) {
        Emit(Token::Kind::kText, std::string(text), pos_);
        break;
      }
      TagKind kind = source_[tag + 1] == '{'   ? TagKind::kVariable
                     : source_[tag + 1] == '%' ? TagKind::kBlock
                                               : TagKind::kComment;
      char sign = tag + 2 < source_.size() ? source_[tag + 2] : '\0';
      if (sign == '-') {
        text = RstripPython(text);
      } else if (sign != '+' && options_.lstrip_blocks && kind != TagKind::kVariable) {
        size_t line_start = text.rfind('\n');
        line_start = line_start == std::string_view::npos ? 0 : line_start + 1;
        if (line_start > 0 || line_starting) {
          if (text.find_first_not_of(" \t", line_start) == std::string_view::npos) {
            text = text.substr(0, line_start);
          }
        }
      }
      if (!text.empty()) Emit(Token::Kind::kText, std::string(text), pos_);
      pos_ = tag + 2;
      if (sign == '-' || (sign == '+' && kind != TagKind::kVariable)) ++pos_;
      absl::Status status;
      switch (kind) {
        case TagKind::kComment:
          status = SkipComment(tag);
          break;
        case TagKind::kVariable:
          Emit(Token::Kind::kVariableBegin, "{{", tag);
          status = LexTag(TagKind::kVariable, tag);
          break;
        case TagKind::kBlock:
          if (IsRawBlock()) {
            status = LexRaw(tag);
          } else {
            Emit(Token::Kind::kBlockBegin, "{%", tag);
            status = LexTag(TagKind::kBlock, tag);
          }
          break;
      }
      if (!status.ok()) return status;
      line_starting = pos_ > 0 && source_[pos_ - 1] == '\n';
    }
    Emit(Token::Kind::kEnd, "", source_.size());
    return std::move(tokens_);
  }

 private:
  size_t FindTagStart(size_t from) const {
    for (size_t i = from; i + 1 < source_.size(); ++i) {
      if (source_[i] == '{' &&
          (source_[i + 1] == '{' || source_[i + 1] == '%' || source_[i + 1] == '#')) {
        return i;
      }
    }
    return source_.size();
  }

  void Emit(Token::Kind kind, std::string text, size_t offset) {
    Token token;
    token.kind = kind;
    token.text = std::move(text);
    token.offset = offset;
    tokens_.push_back(std::move(token));
  }

  absl::Status Error(size_t offset, std::string_view message) const {
    return absl::InvalidArgumentError(absl::StrCat("template syntax error at ",
                                                   DescribePosition(source_, offset), ": ",
                                                   std::string(message)));
  }

  // After a closing %} or #}: '-' strips all whitespace, trim_blocks one newline.
  void AfterBlockEnd(char sign) {
    if (sign == '-') {
      pos_ += WhitespaceRun(source_, pos_);
    } else if (sign != '+' && options_.trim_blocks && pos_ < source_.size() &&
               source_[pos_] == '\n') {
      ++pos_;
    }
  }

  absl::Status SkipComment(size_t tag) {
    size_t end = source_.find("#}", pos_);
    if (end == std::string_view::npos) return Error(tag, "missing end of comment tag");
    char sign = end > pos_ && (source_[end - 1] == '-' || source_[end - 1] == '+')
                    ? source_[end - 1]
                    : '\0';
    pos_ = end + 2;
    AfterBlockEnd(sign);
    return absl::OkStatus();
  }

  // At pos_ just after "{%" (and its sign): is this {% raw %}?
  bool IsRawBlock() const {
    size_t p = pos_;
    while (p < source_.size() && absl::ascii_isspace(source_[p])) ++p;
    if (source_.substr(p, 3) != "raw") return false;
    p += 3;
    return p < source_.size() && !IsNameChar(source_[p]);
  }

  absl::Status LexRaw(size_t tag) {
    size_t p = source_.find("raw", pos_) + 3;
    while (p < source_.size() && absl::ascii_isspace(source_[p])) ++p;
    if (source_.substr(p, 3) == "-%}") {
      pos_ = p + 3;
      pos_ += WhitespaceRun(source_, pos_);
    } else if (source_.substr(p, 2) == "%}") {
      pos_ = p + 2;
    } else {
      return Error(p, "expected '%}' after 'raw'");
    }
    // Find {%[-+]? endraw [-+]?%}.
    for (size_t search = pos_;;) {
      size_t open = source_.find("{%", search);
      if (open == std::string_view::npos) return Error(tag, "missing end of raw directive");
      size_t q = open + 2;
      char sign =
          q < source_.size() && (source_[q] == '-' || source_[q] == '+') ? source_[q++] : '\0';
      while (q < source_.size() && absl::ascii_isspace(source_[q])) ++q;
      if (source_.substr(q, 6) != "endraw") {
        search = open + 2;
        continue;
      }
      q += 6;
      while (q < source_.size() && absl::ascii_isspace(source_[q])) ++q;
      char end_sign = '\0';
      if (q < source_.size() && (source_[q] == '-' || source_[q] == '+')) end_sign = source_[q++];
      if (source_.substr(q, 2) != "%}") return Error(q, "expected '%}' after 'endraw'");
      std::string_view body = source_.substr(pos_, open - pos_);
      if (sign == '-') body = RstripPython(body);
      Emit(Token::Kind::kText, std::string(body), pos_);
      pos_ = q + 2;
      AfterBlockEnd(end_sign);
      return absl::OkStatus();
    }
  }

  absl::Status LexTag(TagKind kind, size_t tag) {
    int depth = 0;
    while (true) {
      while (pos_ < source_.size() && absl::ascii_isspace(source_[pos_])) ++pos_;
      if (pos_ >= source_.size()) {
        return Error(tag, kind == TagKind::kVariable ? "unexpected end of template, expected '}}'"
                                                     : "unexpected end of template, expected '%}'");
      }
      std::string_view rest = source_.substr(pos_);
      if (depth == 0) {
        if (kind == TagKind::kVariable && (rest.starts_with("-}}") || rest.starts_with("}}"))) {
          bool strip = rest[0] == '-';
          Emit(Token::Kind::kVariableEnd, "}}", pos_);
          pos_ += strip ? 3 : 2;
          if (strip) pos_ += WhitespaceRun(source_, pos_);
          return absl::OkStatus();
        }
        if (kind == TagKind::kBlock &&
            (rest.starts_with("-%}") || rest.starts_with("+%}") || rest.starts_with("%}"))) {
          char sign = rest[0] == '%' ? '\0' : rest[0];
          Emit(Token::Kind::kBlockEnd, "%}", pos_);
          pos_ += sign == '\0' ? 2 : 3;
          AfterBlockEnd(sign);
          return absl::OkStatus();
        }
      }
      const char c = rest[0];
      const size_t start = pos_;
      if (IsNameStart(c)) {
        size_t end = pos_;
        while (end < source_.size() && IsNameChar(source_[end])) ++end;
        Emit(Token::Kind::kName, std::string(source_.substr(pos_, end - pos_)), start);
        pos_ = end;
      } else if (absl::ascii_isdigit(c)) {
        if (absl::Status status = LexNumber(); !status.ok()) return status;
      } else if (c == '\'' || c == '"') {
        if (absl::Status status = LexString(); !status.ok()) return status;
      } else {
        static constexpr std::string_view kTwoChar[] = {"//", "**", "==", "!=", "<=", ">="};
        std::string op;
        for (std::string_view two : kTwoChar) {
          if (rest.starts_with(two)) op = std::string(two);
        }
        if (op.empty()) {
          if (std::strchr("+-*/%~<>=()[]{},.:|", c) == nullptr || c == '\0') {
            return Error(pos_, absl::StrCat("unexpected character '", std::string(1, c), "'"));
          }
          op = std::string(1, c);
        }
        if (op == "(" || op == "[" || op == "{") ++depth;
        if (op == ")" || op == "]" || op == "}") {
          if (depth == 0) return Error(pos_, absl::StrCat("unexpected '", op, "'"));
          --depth;
        }
        Emit(Token::Kind::kOperator, op, start);
        pos_ += op.size();
      }
    }
  }

  absl::Status LexNumber() {
    size_t end = pos_;
    auto digits = [&] {
      while (end < source_.size() && (absl::ascii_isdigit(source_[end]) ||
                                      (source_[end] == '_' && end + 1 < source_.size() &&
                                       absl::ascii_isdigit(source_[end + 1])))) {
        ++end;
      }
    };
    digits();
    bool is_float = false;
    if (end + 1 < source_.size() && source_[end] == '.' && absl::ascii_isdigit(source_[end + 1])) {
      is_float = true;
      ++end;
      digits();
    }
    if (end < source_.size() && (source_[end] == 'e' || source_[end] == 'E')) {
      size_t e = end + 1;
      if (e < source_.size() && (source_[e] == '+' || source_[e] == '-')) ++e;
      if (e < source_.size() && absl::ascii_isdigit(source_[e])) {
        is_float = true;
        end = e;
        digits();
      }
    }
    std::string text;
    for (char ch : source_.substr(pos_, end - pos_)) {
      if (ch != '_') text.push_back(ch);
    }
    Token token;
    token.offset = pos_;
    token.text = text;
    if (is_float) {
      token.kind = Token::Kind::kFloat;
      token.number = std::strtod(text.c_str(), nullptr);
    } else {
      token.kind = Token::Kind::kInteger;
      errno = 0;
      char* parsed_end = nullptr;
      long long value = std::strtoll(text.c_str(), &parsed_end, 10);
      if (errno == ERANGE) return Error(pos_, "integer literal out of range");
      token.integer = value;
    }
    tokens_.push_back(std::move(token));
    pos_ = end;
    return absl::OkStatus();
  }

  // Python's unicode-escape decoding of a string literal's body.
  absl::Status LexString() {
    const char quote = source_[pos_];
    const size_t start = pos_;
    std::string value;
    size_t p = pos_ + 1;
    while (true) {
      if (p >= source_.size()) return Error(start, "unterminated string literal");
      char c = source_[p];
      if (c == quote) break;
      if (c != '\\') {
        value.push_back(c);
        ++p;
        continue;
      }
      if (p + 1 >= source_.size()) return Error(start, "unterminated string literal");
      char e = source_[p + 1];
      p += 2;
      switch (e) {
        case '\n':
          break;  // line continuation
        case '\\':
        case '\'':
        case '"':
          value.push_back(e);
          break;
        case 'a':
          value.push_back('\a');
          break;
        case 'b':
          value.push_back('\b');
          break;
        case 'f':
          value.push_back('\f');
          break;
        case 'n':
          value.push_back('\n');
          break;
        case 'r':
          value.push_back('\r');
          break;
        case 't':
          value.push_back('\t');
          break;
        case 'v':
          value.push_back('\v');
          break;
        case 'x':
        case 'u':
        case 'U': {
          const size_t count = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (p + count > source_.size()) return Error(p - 2, "truncated \\x/\\u escape");
          char32_t code = 0;
          for (size_t i = 0; i < count; ++i) {
            char h = source_[p + i];
            if (!absl::ascii_isxdigit(h)) return Error(p - 2, "truncated \\x/\\u escape");
            code =
                code * 16 + (absl::ascii_isdigit(h) ? h - '0' : absl::ascii_tolower(h) - 'a' + 10);
          }
          if (code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
            return Error(p - 2, "escape is not a Unicode scalar value");
          }
          tokenizer::AppendUtf8(code, value);
          p += count;
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            char32_t code = e - '0';
            for (int i = 0; i < 2 && p < source_.size() && source_[p] >= '0' && source_[p] <= '7';
                 ++i) {
              code = code * 8 + (source_[p++] - '0');
            }
            tokenizer::AppendUtf8(code, value);
          } else {
            // Unknown escapes stay as written (Python keeps the backslash).
            value.push_back('\\');
            value.push_back(e);
          }
      }
    }
    Token token;
    token.kind = Token::Kind::kString;
    token.text = std::move(value);
    token.offset = start;
    tokens_.push_back(std::move(token));
    pos_ = p + 1;
    return absl::OkStatus();
  }

  std::string_view source_;
  const LexerOptions& options_;
  size_t pos_ = 0;
  std::vector<Token> tokens_;
};

}  // namespace

std::string NormalizeTemplateSource(std::string_view source, const LexerOptions& options) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!options.keep_trailing_newline && !out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source, const LexerOptions& options) {
  return Lexer(source, options).Run();
}

std::string DescribePosition(std::string_view source, size_t offset) {
  if (offset > source.size()) offset = source.size();
  size_t line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < offset; ++i) {
    if (source[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return absl::StrCat("line ", line, ", column ", offset - line_start + 1);
}

}  // namespace flatfleet::chat_template
