// Lines of a job's JSONL output, in the OpenAI batch output format:
//   {"custom_id": "r1", "response": {"status_code": 200, "body": {...}}, "error": null}
//   {"custom_id": "r2", "response": null, "error": {"code": "...", "message": "..."}}
#pragma once

#include <string>
#include <string_view>

#include "nlohmann/json.hpp"

namespace flatfleet::coordinator {

std::string FormatResponseLine(std::string_view custom_id, const nlohmann::json& response_body);
std::string FormatErrorLine(std::string_view custom_id, std::string_view code,
                            std::string_view message);

}  // namespace flatfleet::coordinator
