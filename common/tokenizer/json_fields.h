// Typed, non-throwing access to tokenizer.json fields. Every error names the field by its path
// (e.g. "pre_tokenizer.pretokenizers[1].type") so a bad file can be fixed from the message.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tokenizer/absl_string_view.h"
#include "common/tokenizer/unicode_regex.h"
#include "nlohmann/json.hpp"

namespace flatfleet::tokenizer {

using Json = nlohmann::json;

// Sequences of components may nest; bounding the depth keeps hostile files off the stack.
inline constexpr int kMaxComponentDepth = 32;

absl::Status FieldError(std::string_view field, absl::string_view message);

std::string SubField(std::string_view field, std::string_view key);
std::string SubField(std::string_view field, size_t index);

// Missing and null fields count as absent; a present field of the wrong type is an error.
absl::StatusOr<std::string> RequireString(const Json& object, std::string_view key,
                                          std::string_view field);
absl::StatusOr<std::string> OptionalString(const Json& object, std::string_view key,
                                           std::string_view field, std::string_view fallback);
absl::StatusOr<bool> OptionalBool(const Json& object, std::string_view key, std::string_view field,
                                  bool fallback);
absl::StatusOr<int64_t> OptionalInt(const Json& object, std::string_view key,
                                    std::string_view field, int64_t fallback);
// The object's "type" string; errors if `object` is not an object or has none.
absl::StatusOr<std::string> RequireType(const Json& object, std::string_view field);
// An array member, as a reference into `object`.
absl::StatusOr<const Json*> RequireArray(const Json& object, std::string_view key,
                                         std::string_view field);

// A {"String": "..."} or {"Regex": "..."} pattern as found in Split and Replace.
absl::StatusOr<UnicodeRegex> ParsePattern(const Json& object, std::string_view key,
                                          std::string_view field);

}  // namespace flatfleet::tokenizer
