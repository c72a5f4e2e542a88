#include "common/tokenizer/json_fields.h"

#include "absl/strings/str_cat.h"

namespace flatfleet::tokenizer {
namespace {

const Json* FindMember(const Json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

}  // namespace

absl::Status FieldError(std::string_view field, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("field '", AbslView(field), "': ", message));
}

std::string SubField(std::string_view field, std::string_view key) {
  return field.empty() ? std::string(key) : absl::StrCat(AbslView(field), ".", AbslView(key));
}

std::string SubField(std::string_view field, size_t index) {
  return absl::StrCat(AbslView(field), "[", index, "]");
}

absl::StatusOr<std::string> RequireString(const Json& object, std::string_view key,
                                          std::string_view field) {
  const Json* member = FindMember(object, key);
  if (member == nullptr) return FieldError(SubField(field, key), "missing");
  if (!member->is_string()) return FieldError(SubField(field, key), "expected a string");
  return member->get<std::string>();
}

absl::StatusOr<std::string> OptionalString(const Json& object, std::string_view key,
                                           std::string_view field, std::string_view fallback) {
  const Json* member = FindMember(object, key);
  if (member == nullptr) return std::string(fallback);
  if (!member->is_string()) return FieldError(SubField(field, key), "expected a string");
  return member->get<std::string>();
}

absl::StatusOr<bool> OptionalBool(const Json& object, std::string_view key, std::string_view field,
                                  bool fallback) {
  const Json* member = FindMember(object, key);
  if (member == nullptr) return fallback;
  if (!member->is_boolean()) return FieldError(SubField(field, key), "expected true or false");
  return member->get<bool>();
}

absl::StatusOr<int64_t> OptionalInt(const Json& object, std::string_view key,
                                    std::string_view field, int64_t fallback) {
  const Json* member = FindMember(object, key);
  if (member == nullptr) return fallback;
  if (!member->is_number_integer()) return FieldError(SubField(field, key), "expected an integer");
  return member->get<int64_t>();
}

absl::StatusOr<std::string> RequireType(const Json& object, std::string_view field) {
  if (!object.is_object()) return FieldError(field, "expected an object");
  return RequireString(object, "type", field);
}

absl::StatusOr<const Json*> RequireArray(const Json& object, std::string_view key,
                                         std::string_view field) {
  const Json* member = FindMember(object, key);
  if (member == nullptr) return FieldError(SubField(field, key), "missing");
  if (!member->is_array()) return FieldError(SubField(field, key), "expected an array");
  return member;
}

absl::StatusOr<UnicodeRegex> ParsePattern(const Json& object, std::string_view key,
                                          std::string_view field) {
  const std::string pattern_field = SubField(field, key);
  const Json* member = FindMember(object, key);
  if (member == nullptr) return FieldError(pattern_field, "missing");
  if (member->is_object() && member->size() == 1) {
    const auto it = member->begin();
    const std::string& kind = it.key();
    const Json& value = it.value();
    if (value.is_string()) {
      absl::StatusOr<UnicodeRegex> regex;
      if (kind == "Regex") {
        regex = UnicodeRegex::Compile(value.get<std::string>());
      } else if (kind == "String") {
        regex = UnicodeRegex::Literal(value.get<std::string>());
      } else {
        return FieldError(pattern_field, absl::StrCat("unknown pattern kind '", kind, "'"));
      }
      if (!regex.ok()) return FieldError(SubField(pattern_field, kind), regex.status().message());
      return regex;
    }
  }
  return FieldError(pattern_field, "expected {\"String\": ...} or {\"Regex\": ...}");
}

}  // namespace flatfleet::tokenizer
