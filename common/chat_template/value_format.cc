#include "common/chat_template/value_format.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/chat_template/python_text.h"
#include "common/tokenizer/utf8.h"

namespace flatfleet::chat_template {
namespace {

// Deeper containers print as "..." (only a namespace can hold itself).
constexpr int kMaxReprDepth = 200;

// Code points Python's str.isprintable() rejects besides the C0 controls: C1 controls, the
// non-ASCII spaces and separators, and the common format characters.
bool IsNonPrintable(char32_t c) {
  return c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) ||
         (c >= 0x205F && c <= 0x2064) || c == 0x3000 || c == 0xFEFF;
}

void AppendRepr(const Value& value, int depth, std::string& out);

void AppendStr(const Value& value, int depth, std::string& out) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return;
    case Value::Kind::kString:
      out += value.string_value();
      return;
    default:
      AppendRepr(value, depth, out);
  }
}

void AppendRepr(const Value& value, int depth, std::string& out) {
  if (depth > kMaxReprDepth) {
    out += "...";
    return;
  }
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return;
    case Value::Kind::kNone:
      out += "None";
      return;
    case Value::Kind::kBool:
      out += value.bool_value() ? "True" : "False";
      return;
    case Value::Kind::kInt:
      absl::StrAppend(&out, value.int_value());
      return;
    case Value::Kind::kFloat:
      out += PythonFloatRepr(value.float_value());
      return;
    case Value::Kind::kString:
      out += PythonStringRepr(value.string_value());
      return;
    case Value::Kind::kList: {
      if (value.is_generator()) {  // Python prints the object's address; there is none here
        out += "<generator object>";
        return;
      }
      out += value.is_tuple() ? '(' : '[';
      bool first = true;
      for (const Value& item : value.list()) {
        if (!first) out += ", ";
        first = false;
        AppendRepr(item, depth + 1, out);
      }
      if (value.is_tuple() && value.list().size() == 1) out += ',';
      out += value.is_tuple() ? ')' : ']';
      return;
    }
    case Value::Kind::kNamespace:
      out += "<Namespace ";
      [[fallthrough]];
    case Value::Kind::kDict: {
      out += '{';
      bool first = true;
      for (const auto& [key, item] : value.dict().entries()) {
        if (!first) out += ", ";
        first = false;
        out += PythonStringRepr(key);
        out += ": ";
        AppendRepr(item, depth + 1, out);
      }
      out += '}';
      if (value.is_namespace()) out += '>';
      return;
    }
    case Value::Kind::kCallable:
      absl::StrAppend(&out, "<function ", value.callable().name, ">");
      return;
  }
}

}  // namespace

std::string PythonStringRepr(const std::string& text) {
  const bool has_single = text.find('\'') != std::string::npos;
  const bool has_double = text.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (size_t pos = 0; pos < text.size();) {
    size_t length = tokenizer::Utf8SequenceLength(text, pos);
    if (length == 0) {  // Not UTF-8: shown as the replacement character Python would decode.
      out += "\\ufffd";
      ++pos;
      continue;
    }
    char32_t c = tokenizer::DecodeUtf8At(text, pos, length);
    if (c == '\\' || c == static_cast<char32_t>(quote)) {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (IsNonPrintable(c)) {
      char escape[16];
      if (c <= 0xFF) {
        std::snprintf(escape, sizeof(escape), "\\x%02x", static_cast<unsigned>(c));
      } else {
        std::snprintf(escape, sizeof(escape), "\\u%04x", static_cast<unsigned>(c));
      }
      out += escape;
    } else {
      out.append(text, pos, length);
    }
    pos += length;
  }
  out += quote;
  return out;
}

std::string ToPythonStr(const Value& value) {
  std::string out;
  AppendStr(value, 0, out);
  return out;
}

std::string PythonRepr(const Value& value) {
  std::string out;
  AppendRepr(value, 0, out);
  return out;
}

}  // namespace flatfleet::chat_template
