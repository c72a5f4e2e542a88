#include "coordinator/batch_output_line.h"

#include "absl/strings/str_cat.h"

namespace flatfleet::coordinator {
namespace {

// Never throws: invalid UTF-8 (say, from a worker's text) is replaced, not fatal.
std::string Dump(const nlohmann::ordered_json& line) {
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// The job id without its "batch_" prefix.
std::string JobHex(std::string_view job_id) {
  if (job_id.starts_with("batch_")) job_id.remove_prefix(6);
  return std::string(job_id);
}

}  // namespace

std::string FormatResponseLine(std::string_view custom_id, const nlohmann::json& response_body) {
  nlohmann::ordered_json line;
  line["custom_id"] = std::string(custom_id);
  line["response"] = {{"status_code", 200}, {"body", response_body}};
  line["error"] = nullptr;
  return Dump(line);
}

std::string FormatErrorLine(std::optional<std::string_view> custom_id, std::string_view code,
                            std::string_view message) {
  nlohmann::ordered_json line;
  if (custom_id) {
    line["custom_id"] = std::string(*custom_id);
  } else {
    line["custom_id"] = nullptr;
  }
  line["response"] = nullptr;
  line["error"] = {{"code", std::string(code)}, {"message", std::string(message)}};
  return Dump(line);
}

std::string FormatInvalidLine(const LineError& error) {
  std::optional<std::string_view> custom_id;
  if (error.custom_id) custom_id = *error.custom_id;
  return FormatErrorLine(custom_id, kInvalidRequestCode, DescribeLineError(error));
}

int FailureStatusCode(std::string_view code) {
  // Codes of failures the request itself causes: a line that did not validate, and the
  // workers' absl codes for a request they refuse (a template that raises, a chat request
  // for a model without a template, a prompt longer than the model's context).
  static constexpr std::string_view kClientCodes[] = {kInvalidRequestCode, "invalid_argument",
                                                      "out_of_range", "failed_precondition"};
  for (std::string_view client_code : kClientCodes) {
    if (code == client_code) return 400;
  }
  return 500;
}

std::string BatchRequestLineId(std::string_view job_id, int64_t line_number) {
  return absl::StrCat("batch_req_", JobHex(job_id), "_", line_number);
}

std::string RequestId(std::string_view job_id, int64_t line_number) {
  return absl::StrCat("req_", JobHex(job_id), "_", line_number);
}

absl::StatusOr<std::string> RenderOpenAiLine(std::string_view job_id, const StoredResult& stored,
                                             bool expired) {
  nlohmann::ordered_json line =
      nlohmann::ordered_json::parse(stored.output_line, nullptr, /*allow_exceptions=*/false);
  if (line.is_discarded() || !line.is_object()) {
    return absl::DataLossError(absl::StrCat("stored result ", stored.sequence, " of ",
                                            std::string(job_id), " is not a JSON object"));
  }
  const std::string request_id = RequestId(job_id, stored.line_number);
  nlohmann::ordered_json out;
  out["id"] = BatchRequestLineId(job_id, stored.line_number);
  out["custom_id"] = line.contains("custom_id") ? line["custom_id"] : nlohmann::ordered_json();
  const nlohmann::ordered_json& error =
      line.contains("error") ? line["error"] : nlohmann::ordered_json();
  if (error.is_object()) {
    std::string code = error.value("code", "");
    std::string message = error.value("message", "");
    if (code == kBatchCancelledCode || code == kBatchExpiredCode) {
      if (expired) {
        code = kBatchExpiredCode;
        message = "this request could not be executed before the completion window expired";
      }
      out["response"] = nullptr;
      out["error"] = {{"code", code}, {"message", message}};
      return Dump(out);
    }
    const int status = FailureStatusCode(code);
    nlohmann::ordered_json body_error;
    body_error["message"] = message;
    body_error["type"] = status < 500 ? "invalid_request_error" : "server_error";
    body_error["param"] = nullptr;
    body_error["code"] = code;
    out["response"] = {
        {"status_code", status}, {"request_id", request_id}, {"body", {{"error", body_error}}}};
    out["error"] = nullptr;
    return Dump(out);
  }
  nlohmann::ordered_json body = nlohmann::ordered_json::object();
  int status = 200;
  if (line.contains("response") && line["response"].is_object()) {
    body = line["response"].value("body", nlohmann::ordered_json::object());
    status = line["response"].value("status_code", 200);
  }
  if (body.is_object() && !body.contains("id")) {
    const bool chat = body.value("object", "") == "chat.completion";
    // Placed first, as OpenAI's objects have it.
    nlohmann::ordered_json with_id;
    with_id["id"] = absl::StrCat(chat ? "chatcmpl-" : "cmpl-", request_id.substr(4));
    for (auto& [key, value] : body.items()) with_id[key] = value;
    body = std::move(with_id);
  }
  out["response"] = {{"status_code", status}, {"request_id", request_id}, {"body", body}};
  out["error"] = nullptr;
  return Dump(out);
}

}  // namespace flatfleet::coordinator
