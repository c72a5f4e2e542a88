// OpenAI's error object, the body of every failed HTTP API call:
//   {"error": {"message": "...", "type": "invalid_request_error", "param": null, "code": null}}
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "coordinator/http/http_message.h"

namespace flatfleet::coordinator::http {

// `type` follows from the status when empty: invalid_request_error for 4xx, authentication_error
// for 401, server_error for 5xx. Empty `param` and `code` are written as null.
HttpResponse ErrorResponse(int status, std::string_view message, std::string_view param = "",
                           std::string_view code = "", std::string_view type = "");

// The HTTP status for an absl status code (INVALID_ARGUMENT 400, NOT_FOUND 404, ...).
int HttpStatusFor(absl::StatusCode code);

// An absl error as an OpenAI error response.
HttpResponse ErrorResponse(const absl::Status& status);

}  // namespace flatfleet::coordinator::http
