// Fields of OpenAI's completion and chat-completion bodies that flatfleet does not implement.
// A batch written for OpenAI's Batch API often spells them out at their defaults
// (`"best_of": 1`, `"echo": false`, `"tools": []`), so each is accepted, and ignored,
// at the value that leaves the result unchanged; any other value would change the result (or
// ask for something not done) and makes the line fail, naming the field. The sampling fields
// flatfleet does implement (penalties, logprobs, n, ...) are in openai_sampling_fields.h.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "coordinator/batch_request.h"
#include "nlohmann/json.hpp"

namespace flatfleet::coordinator {

// Whether `key` is such a field for `endpoint` (null values of it are always accepted).
bool IsDefaultOnlyField(std::string_view key, Endpoint endpoint);

// Why `value` of field `key` cannot be accepted (the message for "body.<key>"), or nullopt
// when it is the no-op value.
std::optional<std::string> CheckDefaultOnlyField(std::string_view key, const nlohmann::json& value,
                                                 Endpoint endpoint);

}  // namespace flatfleet::coordinator
