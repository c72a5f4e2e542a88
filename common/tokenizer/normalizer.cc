#include "common/tokenizer/normalizer.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace flatfleet::tokenizer {
namespace {

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  absl::StatusOr<std::string> Normalize(std::string text) const override {
    if (text.empty()) return text;  // HF leaves empty strings alone
    return prefix_ + text;
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(UnicodeRegex pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::StatusOr<std::string> Normalize(std::string text) const override {
    FF_ASSIGN_OR_RETURN(auto matches, pattern_.FindAll(text));
    if (matches.empty()) return text;
    std::string out;
    size_t last = 0;
    for (const auto& [begin, end] : matches) {
      out.append(text, last, begin - last);
      out += content_;
      last = end;
    }
    out.append(text, last);
    return out;
  }

 private:
  UnicodeRegex pattern_;
  std::string content_;
};

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  absl::StatusOr<std::string> Normalize(std::string text) const override {
    for (const auto& step : steps_) {
      FF_ASSIGN_OR_RETURN(text, step->Normalize(std::move(text)));
    }
    return text;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const Json& json,
                                                            std::string_view field, int depth) {
  if (depth > kMaxComponentDepth) return FieldError(field, "nested too deeply");
  FF_ASSIGN_OR_RETURN(const std::string type, RequireType(json, field));
  if (type == "Prepend") {
    FF_ASSIGN_OR_RETURN(std::string prefix, RequireString(json, "prepend", field));
    return std::make_unique<PrependNormalizer>(std::move(prefix));
  }
  if (type == "Replace") {
    FF_ASSIGN_OR_RETURN(UnicodeRegex pattern, ParsePattern(json, "pattern", field));
    FF_ASSIGN_OR_RETURN(std::string content, RequireString(json, "content", field));
    return std::make_unique<ReplaceNormalizer>(std::move(pattern), std::move(content));
  }
  if (type == "Sequence") {
    FF_ASSIGN_OR_RETURN(const Json* items, RequireArray(json, "normalizers", field));
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (size_t i = 0; i < items->size(); ++i) {
      FF_ASSIGN_OR_RETURN(
          auto step,
          ParseNormalizer((*items)[i], SubField(SubField(field, "normalizers"), i), depth + 1));
      steps.push_back(std::move(step));
    }
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  return FieldError(
      SubField(field, "type"),
      absl::StrCat("unsupported normalizer '", type, "' (supported: Prepend, Replace, Sequence)"));
}

}  // namespace flatfleet::tokenizer
