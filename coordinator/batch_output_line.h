// Lines of a job's JSONL output, in the OpenAI batch output format:
//   {"custom_id": "r1", "response": {"status_code": 200, "body": {...}}, "error": null}
//   {"custom_id": "r2", "response": null, "error": {"code": "...", "message": "..."}}
// An input line rejected at upload gets an error line with code "invalid_request", whose
// message starts with the line number; its custom_id is null when the line had no usable one:
//   {"custom_id": null, "response": null, "error": {"code": "invalid_request",
//    "message": "line 9: body.max_tokens: ..."}}
// The key order is fixed (custom_id, response, error) so stored lines compare byte for byte.
//
// These are the lines the job store keeps. Clients see them through RenderOpenAiLine, which
// gives OpenAI's full line shape: a line "id", "response.request_id", a response body "id",
// and a per-request failure as a 4xx/5xx "status_code" with "body.error" (the top-level
// "error" stays for requests that never ran: batch_cancelled, batch_expired).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "coordinator/batch_request.h"
#include "coordinator/job_types.h"
#include "nlohmann/json.hpp"

namespace flatfleet::coordinator {

inline constexpr char kInvalidRequestCode[] = "invalid_request";

std::string FormatResponseLine(std::string_view custom_id, const nlohmann::json& response_body);
// A missing `custom_id` is written as null.
std::string FormatErrorLine(std::optional<std::string_view> custom_id, std::string_view code,
                            std::string_view message);
// The failed result of an input line that did not validate.
std::string FormatInvalidLine(const LineError& error);

inline constexpr char kBatchCancelledCode[] = "batch_cancelled";
inline constexpr char kBatchExpiredCode[] = "batch_expired";

// The HTTP status a failed request reports in its line: 400 for what the request itself got
// wrong (it would fail again unchanged), 500 for failures of the service.
int FailureStatusCode(std::string_view code);

// The ids OpenAI's line shape carries, derived from the job and line so that they are stable
// across reads: "batch_req_<job>_<line>" and "req_<job>_<line>".
std::string BatchRequestLineId(std::string_view job_id, int64_t line_number);
std::string RequestId(std::string_view job_id, int64_t line_number);

// `stored` (a line written by the functions above) in OpenAI's batch output/error file shape:
//   {"id": "batch_req_..", "custom_id": "r1", "response": {"status_code": 200,
//    "request_id": "req_..", "body": {"id": "chatcmpl-..", "object": ..}}, "error": null}
//   {"id": .., "custom_id": "r2", "response": {"status_code": 400, "request_id": ..,
//    "body": {"error": {"message": .., "type": "invalid_request_error", "param": null,
//    "code": "invalid_request"}}}, "error": null}
//   {"id": .., "custom_id": "r3", "response": null, "error": {"code": "batch_cancelled", ..}}
// With `expired`, cancelled requests are shown as batch_expired (the job was cancelled
// because its completion window passed). An unreadable stored line is a DATA_LOSS error.
absl::StatusOr<std::string> RenderOpenAiLine(std::string_view job_id, const StoredResult& stored,
                                             bool expired = false);

}  // namespace flatfleet::coordinator
