#include "worker/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace flatfleet::engine {

int32_t Argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

void Sampler::Filter(std::span<const float> logits, std::vector<int32_t>& ids,
                     std::vector<double>& probs) const {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  ids.resize(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  // Most likely first; lower id first on ties, so the order is fully determined.
  auto more_likely = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  const int64_t keep = params_.top_k > 0 ? std::min(params_.top_k, vocab) : vocab;
  // Sorting is only needed to cut the distribution; plain temperature sampling over a 128K
  // vocabulary walks the ids in index order instead.
  const bool needs_order = keep < vocab || params_.top_p < 1.0f;
  if (needs_order) {
    std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), more_likely);
    ids.resize(keep);
  }
  // Softmax of logits / temperature in double.
  const double inv_temperature = 1.0 / params_.temperature;
  const double max_logit = *std::max_element(logits.begin(), logits.end());
  probs.resize(keep);
  double total = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((logits[ids[i]] - max_logit) * inv_temperature);
    total += probs[i];
  }
  if (params_.top_p < 1.0f) {
    double cumulative = 0.0;
    int64_t kept = 0;
    while (kept < keep) {
      cumulative += probs[kept++] / total;
      if (cumulative >= params_.top_p) break;
    }
    ids.resize(kept);
    probs.resize(kept);
  }
}

std::vector<int32_t> Sampler::Candidates(std::span<const float> logits) const {
  if (params_.temperature <= 0.0f) return {Argmax(logits)};
  std::vector<int32_t> ids;
  std::vector<double> probs;
  Filter(logits, ids, probs);
  return ids;
}

int32_t Sampler::Next(std::span<const float> logits) {
  if (params_.temperature <= 0.0f) return Argmax(logits);
  std::vector<int32_t> ids;
  std::vector<double> probs;
  Filter(logits, ids, probs);
  const double total = std::accumulate(probs.begin(), probs.end(), 0.0);
  // 53 random bits -> [0, 1): defined by the engine's output, not the library's distributions.
  const double u = static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0) * total;
  double cumulative = 0.0;
  for (size_t i = 0; i < ids.size(); ++i) {
    cumulative += probs[i];
    if (u < cumulative) return ids[i];
  }
  return ids.back();
}

}  // namespace flatfleet::engine
