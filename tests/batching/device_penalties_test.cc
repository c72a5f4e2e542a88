// DevicePenaltyTokens (the entries the GPU engine hands the device sampler) against
// engine::Sampler: no entries when the sampler does not process the logits, and applying
// them with the device kernel's formula (kernels/cuda/logit_penalties.h, written
// out here in float) gives engine::Sampler::Processed bit for bit, step after step.
#include "worker/batching/device_penalties.h"

#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "tests/quant/test_random.h"
#include "worker/sampling/sampler.h"

namespace flatfleet::engine {
namespace {

// logit_penalties.cu's per-entry formula on the host.
std::vector<float> ApplyEntries(std::vector<float> logits, const SamplingParams& p,
                                std::span<const kernels::DevicePenaltyEntry> entries) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  for (const kernels::DevicePenaltyEntry& e : entries) {
    if (e.token < 0 || e.token >= vocab) continue;
    float v = logits[e.token];
    if (p.repetition_penalty != 1.0f &&
        ((e.flags & kernels::DevicePenaltyEntry::kInPrompt) != 0u || e.completion_count > 0)) {
      v = v > 0.0f ? v / p.repetition_penalty : v * p.repetition_penalty;
    }
    if ((p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) && e.completion_count > 0) {
      // A rounded product, as the sampler's compiled code and the kernel's __fmul_rn have it:
      // without `volatile` GCC fuses this expression into an FMA (1.5e-8 instead of 0 for
      // -0.2 * 3 + 0.6).
      const volatile float product = p.frequency_penalty * static_cast<float>(e.completion_count);
      v -= product + p.presence_penalty;
    }
    if ((e.flags & kernels::DevicePenaltyEntry::kMasked) != 0u) {
      v = -std::numeric_limits<float>::infinity();
    }
    logits[e.token] = v;
  }
  return logits;
}

TEST(DevicePenaltyTokensTest, EntriesReproduceTheSamplersProcessedLogits) {
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE(testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  constexpr int64_t kVocab = 50;
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<int32_t> token(-1, kVocab);  // -1 and kVocab: outside
  for (int trial = 0; trial < 64; ++trial) {
    SCOPED_TRACE(testing::Message() << "trial " << trial);
    SamplingParams p;
    const int features = trial % 16;  // every combination of the four features
    if (features & 1) p.repetition_penalty = trial % 3 == 0 ? 0.7f : 1.25f;
    if (features & 2) p.frequency_penalty = trial % 5 == 0 ? -0.2f : 0.4f;
    if (features & 4) p.presence_penalty = 0.6f;
    if (features & 8) p.min_tokens = 1 + trial % 5;
    std::vector<int32_t> prompt(1 + rng() % 12), completion(rng() % 4), stop_ids;
    for (int32_t& t : prompt) t = token(rng);
    for (int32_t& t : completion) t = token(rng);
    if (trial % 7 != 0) stop_ids = {token(rng), token(rng)};
    Sampler sampler(p, prompt, stop_ids);
    for (int32_t t : completion) sampler.Record(t);
    DevicePenaltyTokens device(p, prompt, completion, stop_ids);
    for (int step = 0; step < 8; ++step) {
      std::vector<float> logits(kVocab);
      for (float& v : logits) v = normal(rng);
      logits[rng() % kVocab] = 0.0f;
      const std::span<const kernels::DevicePenaltyEntry> entries = device.Entries();
      // No entries when the sampler does not process (they may also be empty when it does but
      // nothing changes yet: frequency or presence alone before the first token).
      if (!sampler.ProcessesLogits()) EXPECT_TRUE(entries.empty()) << "step " << step;
      const std::vector<float> want = sampler.Processed(logits);
      const std::vector<float> got = ApplyEntries(logits, p, entries);
      for (int64_t v = 0; v < kVocab; ++v) {
        if (std::memcmp(&got[v], &want[v], 4) != 0) {
          ADD_FAILURE() << "token " << v << ": " << got[v] << " vs " << want[v] << " raw "
                        << logits[v];
        }
      }
      ASSERT_EQ(std::memcmp(got.data(), want.data(), kVocab * sizeof(float)), 0) << "step " << step;
      const int32_t next = token(rng);
      sampler.Record(next);
      device.Record(next);
    }
  }
}

}  // namespace
}  // namespace flatfleet::engine
