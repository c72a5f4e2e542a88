#include "worker/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace flatfleet::engine {
namespace {

// max and log(sum(exp(x - max))) in double; -inf logits contribute nothing.
struct LogSumExp {
  double max = -std::numeric_limits<double>::infinity();
  double log_sum = 0.0;
};

LogSumExp ComputeLogSumExp(std::span<const float> logits) {
  LogSumExp out;
  for (float v : logits) out.max = std::max(out.max, static_cast<double>(v));
  double sum = 0.0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - out.max);
  out.log_sum = std::log(sum);
  return out;
}

}  // namespace

int32_t Argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

float TokenLogSoftmax(std::span<const float> logits, int32_t token) {
  const LogSumExp lse = ComputeLogSumExp(logits);
  return static_cast<float>(static_cast<double>(logits[token]) - lse.max - lse.log_sum);
}

std::vector<TokenLogprob> TopLogprobs(std::span<const float> logits, int64_t count) {
  count = std::min<int64_t>(count, static_cast<int64_t>(logits.size()));
  if (count <= 0) return {};
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + count, ids.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  const LogSumExp lse = ComputeLogSumExp(logits);
  std::vector<TokenLogprob> top(count);
  for (int64_t i = 0; i < count; ++i) {
    top[i] = {ids[i],
              static_cast<float>(static_cast<double>(logits[ids[i]]) - lse.max - lse.log_sum)};
  }
  return top;
}

Sampler::Sampler(const SamplingParams& params, std::span<const int32_t> prompt,
                 std::vector<int32_t> stop_ids)
    : params_(params), rng_(params.seed), stop_ids_(std::move(stop_ids)) {
  if (params_.repetition_penalty != 1.0f) prompt_tokens_.insert(prompt.begin(), prompt.end());
}

bool Sampler::HasPenalties() const {
  return params_.repetition_penalty != 1.0f || params_.frequency_penalty != 0.0f ||
         params_.presence_penalty != 0.0f;
}

bool Sampler::ProcessesLogits() const {
  return HasPenalties() || (sampled_ < params_.min_tokens && !stop_ids_.empty());
}

std::vector<float> Sampler::Processed(std::span<const float> logits) const {
  std::vector<float> out(logits.begin(), logits.end());
  const int64_t vocab = static_cast<int64_t>(out.size());
  if (params_.repetition_penalty != 1.0f) {
    const float r = params_.repetition_penalty;
    auto penalise = [&](int32_t token) {
      float& v = out[token];
      v = v > 0.0f ? v / r : v * r;
    };
    // Each token once, whether it occurs in the prompt, the completion or both.
    for (int32_t token : prompt_tokens_) {
      if (token >= 0 && token < vocab) penalise(token);
    }
    for (const auto& [token, count] : completion_counts_) {
      if (token >= 0 && token < vocab && !prompt_tokens_.contains(token)) penalise(token);
    }
  }
  if (params_.frequency_penalty != 0.0f || params_.presence_penalty != 0.0f) {
    for (const auto& [token, count] : completion_counts_) {
      if (token < 0 || token >= vocab) continue;
      out[token] -= params_.frequency_penalty * static_cast<float>(count) +
                    (count > 0 ? params_.presence_penalty : 0.0f);
    }
  }
  if (sampled_ < params_.min_tokens) {
    for (int32_t token : stop_ids_) {
      if (token >= 0 && token < vocab) out[token] = -std::numeric_limits<float>::infinity();
    }
  }
  return out;
}

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

int32_t Sampler::Draw(std::span<const float> logits) {
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

SampledToken Sampler::Sample(std::span<const float> logits) {
  SampledToken out;
  if (ProcessesLogits()) {
    const std::vector<float> processed = Processed(logits);
    out.token = Draw(processed);
  } else {
    out.token = Draw(logits);
  }
  if (params_.logprobs >= 0) {
    out.logprob = TokenLogSoftmax(logits, out.token);
    out.top = TopLogprobs(logits, params_.logprobs);
  }
  Record(out.token);
  return out;
}

void Sampler::Record(int32_t token) {
  ++completion_counts_[token];
  ++sampled_;
}

}  // namespace flatfleet::engine
