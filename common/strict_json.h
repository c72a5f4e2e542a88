// JSON parsing for untrusted files: never throws, and rejects duplicate object keys (which
// nlohmann would otherwise resolve silently by keeping the last one).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace flatfleet {

// Parses `text`; errors name `source_name` and, for duplicates, the repeated key.
absl::StatusOr<nlohmann::json> ParseStrictJson(std::string_view text, std::string_view source_name);

}  // namespace flatfleet
