// Chooses the next token from a row of logits: greedy, or temperature / top-k / top-p sampling
// from a per-request random stream.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "worker/sampling/sampling_params.h"

namespace flatfleet::engine {

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  int32_t Next(std::span<const float> logits);

  // The tokens Next may return for these logits (after top-k and top-p); ordered by decreasing
  // probability when top-k or top-p cut the distribution, else by id. Exposed for tests.
  std::vector<int32_t> Candidates(std::span<const float> logits) const;

 private:
  // Candidates with their unnormalised probabilities.
  void Filter(std::span<const float> logits, std::vector<int32_t>& ids,
              std::vector<double>& probs) const;

  SamplingParams params_;
  std::mt19937_64 rng_;
};

// Index of the largest logit (the first on ties, as torch.argmax).
int32_t Argmax(std::span<const float> logits);

}  // namespace flatfleet::engine
