#include "common/tokenizer/decoder.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "common/tokenizer/byte_level_alphabet.h"
#include "common/tokenizer/utf8.h"

namespace flatfleet::tokenizer {
namespace {

class ByteLevelDecoder final : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>& tokens) const override {
    const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::Get();
    std::string bytes;
    for (const std::string& token : tokens) {
      // Tokens with characters outside the alphabet (e.g. added tokens) keep their own bytes.
      std::optional<std::string> decoded = alphabet.Decode(token);
      bytes += decoded.has_value() ? *decoded : token;
    }
    tokens.assign(1, Utf8Lossy(bytes));
  }
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first_space)
      : replacement_(std::move(replacement)), strip_first_space_(strip_first_space) {}
  void DecodeChain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = absl::StrReplaceAll(tokens[i], {{replacement_, " "}});
      if (i == 0 && strip_first_space_ && tokens[i].starts_with(' ')) tokens[i].erase(0, 1);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_space_;
};

class ByteFallbackDecoder final : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending_bytes;
    const auto flush = [&] {
      if (pending_bytes.empty()) return;
      if (IsValidUtf8(pending_bytes)) {
        out.push_back(pending_bytes);
      } else {
        // HF emits one replacement character per byte of an invalid run.
        for (size_t i = 0; i < pending_bytes.size(); ++i) out.emplace_back(kReplacementCharacter);
      }
      pending_bytes.clear();
    };
    for (std::string& token : tokens) {
      int value = 0;
      if (token.size() == 6 && token.starts_with("<0x") && token.ends_with(">") &&
          absl::ascii_isxdigit(token[3]) && absl::ascii_isxdigit(token[4]) &&
          absl::SimpleHexAtoi(AbslView(std::string_view(token).substr(3, 2)), &value)) {
        pending_bytes.push_back(static_cast<char>(value));
        continue;
      }
      flush();
      out.push_back(std::move(token));
    }
    flush();
    tokens = std::move(out);
  }
};

class FuseDecoder final : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>& tokens) const override {
    tokens.assign(1, absl::StrJoin(tokens, ""));
  }
};

class StripDecoder final : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void DecodeChain(std::vector<std::string>& tokens) const override {
    for (std::string& token : tokens) {
      std::string_view view = token;
      for (size_t i = 0; i < start_ && view.starts_with(content_); ++i) {
        view.remove_prefix(content_.size());
      }
      for (size_t i = 0; i < stop_ && view.ends_with(content_); ++i) {
        view.remove_suffix(content_.size());
      }
      token = std::string(view);
    }
  }

 private:
  std::string content_;
  size_t start_;
  size_t stop_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(UnicodeRegex pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void DecodeChain(std::vector<std::string>& tokens) const override {
    for (std::string& token : tokens) {
      auto matches = pattern_.FindAll(token);
      if (!matches.ok() || matches->empty()) continue;
      std::string out;
      size_t last = 0;
      for (const auto& [begin, end] : *matches) {
        out.append(token, last, begin - last);
        out += content_;
        last = end;
      }
      out.append(token, last);
      token = std::move(out);
    }
  }

 private:
  UnicodeRegex pattern_;
  std::string content_;
};

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps)
      : steps_(std::move(steps)) {}
  void DecodeChain(std::vector<std::string>& tokens) const override {
    for (const auto& step : steps_) step->DecodeChain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

absl::StatusOr<size_t> ParseCount(const Json& json, std::string_view key, std::string_view field) {
  FF_ASSIGN_OR_RETURN(const int64_t count, OptionalInt(json, key, field, 0));
  if (count < 0) return FieldError(SubField(field, key), "must not be negative");
  return static_cast<size_t>(count);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const Json& json, std::string_view field,
                                                      int depth) {
  if (depth > kMaxComponentDepth) return FieldError(field, "nested too deeply");
  FF_ASSIGN_OR_RETURN(const std::string type, RequireType(json, field));
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Metaspace") {
    FF_ASSIGN_OR_RETURN(std::string replacement,
                        OptionalString(json, "replacement", field, "\xE2\x96\x81"));
    if (replacement.empty()) return FieldError(SubField(field, "replacement"), "must not be empty");
    FF_ASSIGN_OR_RETURN(const bool add_prefix_space,
                        OptionalBool(json, "add_prefix_space", field, true));
    FF_ASSIGN_OR_RETURN(
        const std::string scheme,
        OptionalString(json, "prepend_scheme", field, add_prefix_space ? "always" : "never"));
    return std::make_unique<MetaspaceDecoder>(std::move(replacement), scheme != "never");
  }
  if (type == "Strip") {
    FF_ASSIGN_OR_RETURN(std::string content, RequireString(json, "content", field));
    if (content.empty()) return FieldError(SubField(field, "content"), "must not be empty");
    FF_ASSIGN_OR_RETURN(const size_t start, ParseCount(json, "start", field));
    FF_ASSIGN_OR_RETURN(const size_t stop, ParseCount(json, "stop", field));
    return std::make_unique<StripDecoder>(std::move(content), start, stop);
  }
  if (type == "Replace") {
    FF_ASSIGN_OR_RETURN(UnicodeRegex pattern, ParsePattern(json, "pattern", field));
    FF_ASSIGN_OR_RETURN(std::string content, RequireString(json, "content", field));
    return std::make_unique<ReplaceDecoder>(std::move(pattern), std::move(content));
  }
  if (type == "Sequence") {
    FF_ASSIGN_OR_RETURN(const Json* items, RequireArray(json, "decoders", field));
    std::vector<std::unique_ptr<Decoder>> steps;
    for (size_t i = 0; i < items->size(); ++i) {
      FF_ASSIGN_OR_RETURN(
          auto step,
          ParseDecoder((*items)[i], SubField(SubField(field, "decoders"), i), depth + 1));
      steps.push_back(std::move(step));
    }
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  return FieldError(SubField(field, "type"),
                    absl::StrCat("unsupported decoder '", type,
                                 "' (supported: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, "
                                 "Replace, Sequence)"));
}

}  // namespace flatfleet::tokenizer
