#include "coordinator/batch_request.h"

#include "absl/strings/str_cat.h"

namespace flatfleet::coordinator {

std::string_view EndpointUrl(Endpoint endpoint) {
  return endpoint == Endpoint::kChatCompletions ? "/v1/chat/completions" : "/v1/completions";
}

std::string DescribeLineError(const LineError& error) {
  const std::string prefix = absl::StrCat("line ", error.line_number, ": ");
  // Some messages (malformed JSON) already name their line.
  std::string_view message = error.message;
  if (message.substr(0, prefix.size()) == prefix) message.remove_prefix(prefix.size());
  if (error.field.empty()) return absl::StrCat(prefix, std::string(message));
  return absl::StrCat(prefix, error.field, ": ", std::string(message));
}

}  // namespace flatfleet::coordinator
