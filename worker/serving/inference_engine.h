// The contract between a worker's RPC service and its batching engine. Requests join a running
// batch at the next step and leave as soon as they finish (continuous batching); the service
// thread drives the engine by calling Step() in a loop.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "worker/generate/generator.h"
#include "worker/sampling/sampling_params.h"

namespace flatfleet::engine {

struct EngineRequest {
  std::string id;  // unique among the engine's live requests
  std::vector<int32_t> prompt;
  SamplingParams params;
  // When set, the engine calls it on its step thread with each completion token that is part
  // of the text (not a stop id) as it is accepted, so that the text can be streamed. An engine
  // may leave it uncalled; the result still has the whole text.
  std::function<void(int32_t token)> on_text_token;
};

struct EngineResult {
  std::string id;
  // OK with a result; Cancelled after Cancel(); other errors (e.g. the KV cache cannot hold the
  // request even alone) fail just this request.
  absl::Status status;
  GenerationResult result;  // choice 0
  // Choices 1 ... n - 1 of a request with params.n > 1, in order.
  std::vector<GenerationResult> other_choices;
  double time_to_first_token_seconds = 0;  // from Submit to the first sampled token
  double total_seconds = 0;                // from Submit to the result
  // The phases of total_seconds, when the engine tracks them (the continuous batcher does):
  // waiting for admission, from admission to the first token, from it to the result.
  double queue_seconds = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
};

struct EngineStats {
  int64_t waiting_requests = 0;
  int64_t running_requests = 0;
  int64_t kv_cache_used_blocks = 0;
  int64_t kv_cache_total_blocks = 0;
  int64_t prompt_tokens_total = 0;
  int64_t generated_tokens_total = 0;
  int64_t steps_total = 0;
};

class InferenceEngine {
 public:
  virtual ~InferenceEngine() = default;

  // Queues a request. Fails (and queues nothing) when the id is live or the request can never
  // fit (prompt + max_tokens beyond the model's or the cache's capacity, ids out of vocabulary).
  virtual absl::Status Submit(EngineRequest request) = 0;
  // Stops a queued or running request; its result comes back from a later Step() with a
  // Cancelled status. Unknown ids are ignored.
  virtual void Cancel(const std::string& id) = 0;
  // Runs one batching step (admission, one forward pass over chunked prefills and decodes,
  // sampling) and returns the requests that finished in it. Does nothing when idle.
  virtual std::vector<EngineResult> Step() = 0;
  virtual bool Idle() const = 0;
  virtual EngineStats Stats() const = 0;
};

}  // namespace flatfleet::engine
