// The sampling fields of OpenAI's (and vLLM's) completion and chat-completion bodies beyond
// max_tokens / temperature / top_p / top_k / seed / stop: penalties, min_tokens, ignore_eos,
// stop_token_ids, n, and log probabilities in each endpoint's own spelling:
//   /v1/completions:      "logprobs": N            (N alternatives per token, 0-20; null: off)
//   /v1/chat/completions: "logprobs": true, "top_logprobs": N   (N > 0 needs logprobs)
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "coordinator/batch_request.h"
#include "nlohmann/json.hpp"

namespace flatfleet::coordinator {

// Bounds (OpenAI's where it has them; vLLM's otherwise).
inline constexpr uint32_t kMaxChoicesPerRequest = 128;
inline constexpr uint32_t kMaxTopLogprobs = 20;
inline constexpr size_t kMaxStopTokenIds = 64;

// Whether `key` is one of these fields for `endpoint`.
bool IsSamplingField(std::string_view key, Endpoint endpoint);

struct SamplingFieldError {
  std::string field;  // "body.<key>..."
  std::string message;
};

// Reads these fields of `body` (null or absent: the default) into `sampling`; the first problem
// found names its field. min_tokens is checked against sampling->max_tokens, so read that first.
std::optional<SamplingFieldError> ReadSamplingFields(const nlohmann::json& body, Endpoint endpoint,
                                                     SamplingOptions* sampling);

// The fields of `sampling` that ReadSamplingFields reads, written back in `endpoint`'s spelling
// (only the ones that differ from their defaults).
void WriteSamplingFields(const SamplingOptions& sampling, Endpoint endpoint, nlohmann::json& body);

}  // namespace flatfleet::coordinator
