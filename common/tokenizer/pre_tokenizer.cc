#include "common/tokenizer/pre_tokenizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "common/tokenizer/byte_level_alphabet.h"
#include "common/tokenizer/split_behavior.h"

namespace flatfleet::tokenizer {
namespace {

// GPT-2's word pattern, used by ByteLevel when use_regex is set.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Splits every piece at the matches of `regex` according to `behavior`.
absl::Status SplitPieces(const UnicodeRegex& regex, SplitBehavior behavior, bool invert,
                         std::vector<PreToken>& pieces) {
  std::vector<PreToken> out;
  out.reserve(pieces.size());
  for (PreToken& piece : pieces) {
    FF_ASSIGN_OR_RETURN(auto matches, regex.FindAll(piece.text));
    for (const auto& [begin, end] : SplitRanges(piece.text.size(), matches, behavior, invert)) {
      out.push_back({piece.text.substr(begin, end - begin), piece.at_input_start && begin == 0});
    }
  }
  pieces = std::move(out);
  return absl::OkStatus();
}

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(UnicodeRegex regex, SplitBehavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  absl::Status Apply(std::vector<PreToken>& pieces) const override {
    return SplitPieces(regex_, behavior_, invert_, pieces);
  }

 private:
  UnicodeRegex regex_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::optional<UnicodeRegex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}
  absl::Status Apply(std::vector<PreToken>& pieces) const override {
    if (add_prefix_space_) {
      for (PreToken& piece : pieces) {
        if (!piece.text.starts_with(' ')) piece.text.insert(0, 1, ' ');
      }
    }
    if (regex_.has_value()) {
      FF_RETURN_IF_ERROR(SplitPieces(*regex_, SplitBehavior::kIsolated, false, pieces));
    }
    const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::Get();
    for (PreToken& piece : pieces) {
      std::string mapped;
      alphabet.Encode(piece.text, mapped);
      piece.text = std::move(mapped);
    }
    return absl::OkStatus();
  }

 private:
  bool add_prefix_space_;
  std::optional<UnicodeRegex> regex_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split,
                        UnicodeRegex replacement_regex)
      : replacement_(std::move(replacement)),
        scheme_(scheme),
        split_(split),
        replacement_regex_(std::move(replacement_regex)) {}
  absl::Status Apply(std::vector<PreToken>& pieces) const override {
    for (PreToken& piece : pieces) {
      piece.text = absl::StrReplaceAll(piece.text, {{" ", replacement_}});
      const bool prepend = scheme_ == PrependScheme::kAlways ||
                           (scheme_ == PrependScheme::kFirst && piece.at_input_start);
      if (prepend && !piece.text.starts_with(replacement_)) piece.text.insert(0, replacement_);
    }
    if (!split_) return absl::OkStatus();
    return SplitPieces(replacement_regex_, SplitBehavior::kMergedWithNext, false, pieces);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
  UnicodeRegex replacement_regex_;
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  absl::Status Apply(std::vector<PreToken>& pieces) const override {
    for (const auto& step : steps_) FF_RETURN_IF_ERROR(step->Apply(pieces));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> MakeRegexSplit(std::string_view pattern,
                                                             SplitBehavior behavior, bool invert) {
  FF_ASSIGN_OR_RETURN(UnicodeRegex regex, UnicodeRegex::Compile(pattern));
  return std::make_unique<SplitPreTokenizer>(std::move(regex), behavior, invert);
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParseMetaspace(const Json& json,
                                                             std::string_view field) {
  FF_ASSIGN_OR_RETURN(std::string replacement,
                      OptionalString(json, "replacement", field, "\xE2\x96\x81"));
  if (replacement.empty()) return FieldError(SubField(field, "replacement"), "must not be empty");
  // Older exports spell the scheme as add_prefix_space (true = always).
  FF_ASSIGN_OR_RETURN(const bool add_prefix_space,
                      OptionalBool(json, "add_prefix_space", field, true));
  FF_ASSIGN_OR_RETURN(
      const std::string scheme_name,
      OptionalString(json, "prepend_scheme", field, add_prefix_space ? "always" : "never"));
  PrependScheme scheme;
  if (scheme_name == "always") {
    scheme = PrependScheme::kAlways;
  } else if (scheme_name == "first") {
    scheme = PrependScheme::kFirst;
  } else if (scheme_name == "never") {
    scheme = PrependScheme::kNever;
  } else {
    return FieldError(SubField(field, "prepend_scheme"),
                      absl::StrCat("unknown scheme '", scheme_name, "'"));
  }
  FF_ASSIGN_OR_RETURN(const bool split, OptionalBool(json, "split", field, true));
  FF_ASSIGN_OR_RETURN(UnicodeRegex regex, UnicodeRegex::Literal(replacement));
  return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), scheme, split,
                                                 std::move(regex));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const Json& json,
                                                                std::string_view field, int depth) {
  if (depth > kMaxComponentDepth) return FieldError(field, "nested too deeply");
  FF_ASSIGN_OR_RETURN(const std::string type, RequireType(json, field));
  if (type == "Sequence") {
    FF_ASSIGN_OR_RETURN(const Json* items, RequireArray(json, "pretokenizers", field));
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (size_t i = 0; i < items->size(); ++i) {
      FF_ASSIGN_OR_RETURN(
          auto step,
          ParsePreTokenizer((*items)[i], SubField(SubField(field, "pretokenizers"), i), depth + 1));
      steps.push_back(std::move(step));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  if (type == "Split") {
    FF_ASSIGN_OR_RETURN(UnicodeRegex regex, ParsePattern(json, "pattern", field));
    FF_ASSIGN_OR_RETURN(const std::string behavior_name, RequireString(json, "behavior", field));
    absl::StatusOr<SplitBehavior> behavior = ParseSplitBehavior(behavior_name);
    if (!behavior.ok()) return FieldError(SubField(field, "behavior"), behavior.status().message());
    FF_ASSIGN_OR_RETURN(const bool invert, OptionalBool(json, "invert", field, false));
    return std::make_unique<SplitPreTokenizer>(std::move(regex), *behavior, invert);
  }
  if (type == "ByteLevel") {
    FF_ASSIGN_OR_RETURN(const bool add_prefix_space,
                        OptionalBool(json, "add_prefix_space", field, true));
    FF_ASSIGN_OR_RETURN(const bool use_regex, OptionalBool(json, "use_regex", field, true));
    std::optional<UnicodeRegex> regex;
    if (use_regex) {
      FF_ASSIGN_OR_RETURN(regex, UnicodeRegex::Compile(kGpt2Pattern));
    }
    return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, std::move(regex));
  }
  if (type == "Metaspace") return ParseMetaspace(json, field);
  if (type == "Digits") {
    FF_ASSIGN_OR_RETURN(const bool individual,
                        OptionalBool(json, "individual_digits", field, false));
    return MakeRegexSplit(
        R"(\p{N})", individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false);
  }
  if (type == "Whitespace") {
    // HF keeps the matches of \w+|[^\w\s]+ and drops everything between them.
    return MakeRegexSplit(R"(\w+|[^\w\s]+)", SplitBehavior::kRemoved, true);
  }
  if (type == "WhitespaceSplit") return MakeRegexSplit(R"(\s+)", SplitBehavior::kRemoved, false);
  return FieldError(SubField(field, "type"),
                    absl::StrCat("unsupported pre-tokenizer '", type,
                                 "' (supported: Sequence, Split, ByteLevel, Metaspace, Digits, "
                                 "Whitespace, WhitespaceSplit)"));
}

}  // namespace flatfleet::tokenizer
