#include "coordinator/batch_request.h"

namespace flatfleet::coordinator {

std::string_view EndpointUrl(Endpoint endpoint) {
  return endpoint == Endpoint::kChatCompletions ? "/v1/chat/completions" : "/v1/completions";
}

}  // namespace flatfleet::coordinator
