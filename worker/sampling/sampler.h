// Chooses the next token from a row of logits: greedy, or temperature / top-k / top-p sampling
// from a per-request random stream, after the request's penalties and min_tokens masking; and
// reports the chosen token's log-probability with the most likely alternatives when asked.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "worker/sampling/sampling_params.h"

namespace flatfleet::engine {

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

// One sampled token with, when the request asked for them (params.logprobs >= 0), its
// log-probability and the params.logprobs most likely tokens (most likely first, lower id first
// on ties), both under log_softmax of the raw logits.
struct SampledToken {
  int32_t token = 0;
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;
};

class Sampler {
 public:
  // `prompt` feeds the repetition penalty. `stop_ids` are masked while fewer than
  // params.min_tokens tokens have been sampled (the caller's full stop set: end-of-sequence ids
  // unless ignore_eos, plus stop_token_ids).
  explicit Sampler(const SamplingParams& params, std::span<const int32_t> prompt = {},
                   std::vector<int32_t> stop_ids = {});

  // Samples and records the token (its count feeds the penalties of later steps).
  SampledToken Sample(std::span<const float> logits);
  int32_t Next(std::span<const float> logits) { return Sample(logits).token; }
  // Records a token chosen elsewhere (the device sampler) as if Sample had drawn it.
  void Record(int32_t token);

  // The logits the draw sees at this step: the raw ones with the penalties and min_tokens mask
  // applied (a copy; the raw ones are returned unchanged when nothing applies). Exposed for tests.
  std::vector<float> Processed(std::span<const float> logits) const;

  // The tokens Next may return for these logits (after top-k and top-p); ordered by decreasing
  // probability when top-k or top-p cut the distribution, else by id. Exposed for tests.
  std::vector<int32_t> Candidates(std::span<const float> logits) const;

  // Whether this step's draw changes the logits (penalties or min_tokens masking): engines that
  // sample on the device hand such rows to this sampler instead.
  bool ProcessesLogits() const;
  int64_t sampled() const { return sampled_; }

 private:
  bool HasPenalties() const;
  // Candidates with their unnormalised probabilities.
  void Filter(std::span<const float> logits, std::vector<int32_t>& ids,
              std::vector<double>& probs) const;
  int32_t Draw(std::span<const float> logits);

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::unordered_set<int32_t> prompt_tokens_;
  std::vector<int32_t> stop_ids_;
  std::unordered_map<int32_t, int64_t> completion_counts_;
  int64_t sampled_ = 0;
};

// Index of the largest logit (the first on ties, as torch.argmax).
int32_t Argmax(std::span<const float> logits);

// log_softmax(logits)[token] in double, and the `count` most likely tokens with theirs.
float TokenLogSoftmax(std::span<const float> logits, int32_t token);
std::vector<TokenLogprob> TopLogprobs(std::span<const float> logits, int64_t count);

}  // namespace flatfleet::engine
