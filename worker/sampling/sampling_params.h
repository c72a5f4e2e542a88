// Per-request decoding settings (OpenAI-style).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace flatfleet::engine {

// Bounds a request's n and logprobs may reach (OpenAI allows top_logprobs up to 20).
inline constexpr int32_t kMaxChoices = 128;
inline constexpr int32_t kMaxTopLogprobs = 20;

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
  // Generation stops after any of these ids (not part of the returned tokens or text), and
  // after the model's end-of-sequence ids unless ignore_eos is set (vLLM's rules).
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  // Generation stops when the decoded text contains one of these; the text is cut before it.
  std::vector<std::string> stop_strings;

  // Penalties on tokens seen before (vLLM's order and formulas): repetition_penalty r divides a
  // positive logit by r and multiplies a negative one by r, for tokens of the prompt or the
  // completion so far (1 disables); then frequency_penalty times the token's count in the
  // completion and presence_penalty once if it occurs there are subtracted (0 disables).
  float repetition_penalty = 1.0f;
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  // The stop ids (end-of-sequence and stop_token_ids) cannot be sampled, and stop strings do not
  // end generation, before this many completion tokens.
  int64_t min_tokens = 0;
  // < 0: no log probabilities. Otherwise each sampled token reports its log-probability under
  // the model's raw logits (log_softmax, before penalties and temperature, as vLLM and OpenAI
  // report) and the `logprobs` most likely alternatives.
  int32_t logprobs = -1;
  // Completions sampled for the prompt; choice i > 0 draws from ChoiceSeed(seed, i).
  int32_t n = 1;
};

// The seed of choice `index` of a request: choice 0 keeps the request's seed, so n = 1 is
// unchanged; the others get well-mixed seeds (splitmix64 of seed and index), so a choice's tokens
// depend only on the request's seed, its index and the step, never on the batch.
inline uint64_t ChoiceSeed(uint64_t seed, int64_t index) {
  if (index == 0) return seed;
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(index + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace flatfleet::engine
