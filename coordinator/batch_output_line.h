// Lines of a job's JSONL output, in the OpenAI batch output format:
//   {"custom_id": "r1", "response": {"status_code": 200, "body": {...}}, "error": null}
//   {"custom_id": "r2", "response": null, "error": {"code": "...", "message": "..."}}
// An input line rejected at upload gets an error line with code "invalid_request", whose
// message starts with the line number; its custom_id is null when the line had no usable one:
//   {"custom_id": null, "response": null, "error": {"code": "invalid_request",
//    "message": "line 9: body.max_tokens: ..."}}
// The key order is fixed (custom_id, response, error) so stored lines compare byte for byte.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "coordinator/batch_request.h"
#include "nlohmann/json.hpp"

namespace flatfleet::coordinator {

inline constexpr char kInvalidRequestCode[] = "invalid_request";

std::string FormatResponseLine(std::string_view custom_id, const nlohmann::json& response_body);
// A missing `custom_id` is written as null.
std::string FormatErrorLine(std::optional<std::string_view> custom_id, std::string_view code,
                            std::string_view message);
// The failed result of an input line that did not validate.
std::string FormatInvalidLine(const LineError& error);

}  // namespace flatfleet::coordinator
