#include "common/tokenizer/post_processor.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace flatfleet::tokenizer {
namespace {

absl::StatusOr<int32_t> ParseId(const Json& json, std::string_view field) {
  if (!json.is_number_integer() || json.get<int64_t>() < 0 || json.get<int64_t>() > INT32_MAX) {
    return FieldError(field, "expected a non-negative 32-bit id");
  }
  return static_cast<int32_t>(json.get<int64_t>());
}

absl::StatusOr<SpecialTokenFrame> ParseTemplate(const Json& json, std::string_view field) {
  const std::string single_field = SubField(field, "single");
  FF_ASSIGN_OR_RETURN(const Json* single, RequireArray(json, "single", field));
  SpecialTokenFrame frame;
  bool seen_sequence = false;
  for (size_t i = 0; i < single->size(); ++i) {
    const std::string piece_field = SubField(single_field, i);
    const Json& piece = (*single)[i];
    if (piece.is_object() && piece.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    if (!piece.is_object() || !piece.contains("SpecialToken")) {
      return FieldError(piece_field, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
    FF_ASSIGN_OR_RETURN(
        const std::string name,
        RequireString(piece["SpecialToken"], "id", SubField(piece_field, "SpecialToken")));
    const std::string tokens_field = SubField(SubField(field, "special_tokens"), name);
    if (!json.contains("special_tokens") || !json["special_tokens"].is_object() ||
        !json["special_tokens"].contains(name)) {
      return FieldError(tokens_field, "missing (used by the single template)");
    }
    FF_ASSIGN_OR_RETURN(const Json* ids,
                        RequireArray(json["special_tokens"][name], "ids", tokens_field));
    for (size_t k = 0; k < ids->size(); ++k) {
      FF_ASSIGN_OR_RETURN(const int32_t id,
                          ParseId((*ids)[k], SubField(SubField(tokens_field, "ids"), k)));
      (seen_sequence ? frame.suffix : frame.prefix).push_back(id);
    }
  }
  return frame;
}

// BertProcessing / RobertaProcessing: "cls": [token, id] before, "sep": [token, id] after.
absl::StatusOr<SpecialTokenFrame> ParseClsSep(const Json& json, std::string_view field) {
  SpecialTokenFrame frame;
  for (const char* key : {"cls", "sep"}) {
    const std::string key_field = SubField(field, key);
    if (!json.contains(key) || !json[key].is_array() || json[key].size() != 2) {
      return FieldError(key_field, "expected [token, id]");
    }
    FF_ASSIGN_OR_RETURN(const int32_t id, ParseId(json[key][1], SubField(key_field, 1)));
    (std::string_view(key) == "cls" ? frame.prefix : frame.suffix).push_back(id);
  }
  return frame;
}

}  // namespace

absl::StatusOr<SpecialTokenFrame> ParsePostProcessor(const Json& json, std::string_view field,
                                                     int depth) {
  if (json.is_null()) return SpecialTokenFrame{};
  if (depth > kMaxComponentDepth) return FieldError(field, "nested too deeply");
  FF_ASSIGN_OR_RETURN(const std::string type, RequireType(json, field));
  if (type == "TemplateProcessing") return ParseTemplate(json, field);
  if (type == "BertProcessing" || type == "RobertaProcessing") return ParseClsSep(json, field);
  if (type == "ByteLevel") return SpecialTokenFrame{};
  if (type == "Sequence") {
    FF_ASSIGN_OR_RETURN(const Json* items, RequireArray(json, "processors", field));
    SpecialTokenFrame frame;
    for (size_t i = 0; i < items->size(); ++i) {
      FF_ASSIGN_OR_RETURN(
          SpecialTokenFrame inner,
          ParsePostProcessor((*items)[i], SubField(SubField(field, "processors"), i), depth + 1));
      // Each processor wraps the output of the previous one.
      inner.prefix.insert(inner.prefix.end(), frame.prefix.begin(), frame.prefix.end());
      frame.suffix.insert(frame.suffix.end(), inner.suffix.begin(), inner.suffix.end());
      frame.prefix = std::move(inner.prefix);
    }
    return frame;
  }
  return FieldError(SubField(field, "type"),
                    absl::StrCat("unsupported post-processor '", type,
                                 "' (supported: TemplateProcessing, BertProcessing, "
                                 "RobertaProcessing, ByteLevel, Sequence)"));
}

}  // namespace flatfleet::tokenizer
