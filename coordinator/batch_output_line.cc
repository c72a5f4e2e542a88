#include "coordinator/batch_output_line.h"

namespace flatfleet::coordinator {
namespace {

// Never throws: invalid UTF-8 (say, from a worker's text) is replaced, not fatal.
std::string Dump(const nlohmann::ordered_json& line) {
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
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

}  // namespace flatfleet::coordinator
