// Per-request decoding settings (OpenAI-style).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace flatfleet::engine {

struct SamplingParams {
  // 0 means greedy (argmax); otherwise logits are divided by it before sampling.
  float temperature = 0.0f;
  // Keep only the k most likely tokens; 0 disables.
  int64_t top_k = 0;
  // Keep the smallest set of most likely tokens whose probability reaches top_p; 1 disables.
  float top_p = 1.0f;
  // Seeds this request's own random stream, so results do not depend on the batch.
  uint64_t seed = 0;
  int64_t max_tokens = 16;
  // Generation stops after any of these ids (not part of the returned tokens or text). When
  // empty, the model's end-of-sequence ids are used unless ignore_eos is set.
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  // Generation stops when the decoded text contains one of these; the text is cut before it.
  std::vector<std::string> stop_strings;
};

}  // namespace flatfleet::engine
