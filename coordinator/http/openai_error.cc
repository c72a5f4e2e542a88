#include "coordinator/http/openai_error.h"

#include <string>

#include "nlohmann/json.hpp"

namespace flatfleet::coordinator::http {
namespace {

nlohmann::ordered_json NullIfEmpty(std::string_view text) {
  if (text.empty()) return nullptr;
  return std::string(text);
}

std::string_view DefaultType(int status) {
  if (status == 401) return "authentication_error";
  if (status == 403) return "permission_error";
  if (status == 429) return "rate_limit_error";
  return status >= 500 ? "server_error" : "invalid_request_error";
}

}  // namespace

HttpResponse ErrorResponse(int status, std::string_view message, std::string_view param,
                           std::string_view code, std::string_view type) {
  nlohmann::ordered_json error;
  error["message"] = std::string(message);
  error["type"] = std::string(type.empty() ? DefaultType(status) : type);
  error["param"] = NullIfEmpty(param);
  error["code"] = NullIfEmpty(code);
  HttpResponse response;
  response.status = status;
  response.body = nlohmann::ordered_json({{"error", error}})
                      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

HttpResponse ErrorResponse(const absl::Status& status) {
  return ErrorResponse(HttpStatusFor(status.code()), std::string(status.message()));
}

}  // namespace flatfleet::coordinator::http
