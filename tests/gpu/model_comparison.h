// Shared by the GPU model tests: the fixtures' location and a comparison of two models' logits
// over the same prompts (one of them prefilled in two chunks, so the second chunk attends to a
// cached prefix).
#pragma once

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <span>
#include <vector>

#include "gtest/gtest.h"
#include "worker/model/llama_model.h"
#include "worker/sampling/sampler.h"

namespace flatfleet::engine {

struct Comparison {
  double relative_error = 0;
  double top1 = 0;  // over every position (near-ties of the reference may flip: printed only)
  // Over the decisive positions: where the reference's top-2 margin exceeds kDecisiveMargin times
  // that row's rms logit difference. A flip there needs the two logits' errors to differ by more
  // than about 5.7 standard deviations, so any disagreement is a bug, not noise.
  double decisive_top1 = 0;
  double decisive_fraction = 0;  // of all positions
  int64_t decisive_positions = 0;
  int64_t positions = 0;
};

// The least number of decisive positions a comparison must have for its decisive top-1 to say
// something (of the ~320 Compare runs: the lossiest recipe, w8a8-static, measured 9 of 101 with
// two prompts, so Compare runs four).
inline constexpr int64_t kMinDecisivePositions = 16;

inline constexpr double kDecisiveMargin = 8.0;

// The fixtures: FLATFLEET_SHARED_DIR when set (the GPU machine's copy), else the build's.
inline std::filesystem::path SharedDir() {
  if (const char* dir = std::getenv("FLATFLEET_SHARED_DIR")) return dir;
  return FLATFLEET_SHARED_DIR;
}

// Runs four prompts (one a prefill in two chunks, so the second chunk attends to a cached prefix)
// on both models and compares all positions' logits.
inline Comparison Compare(const LlamaModel& cpu, const LlamaModel& gpu, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int64_t vocab = cpu.config().vocab_size;
  std::vector<std::vector<int32_t>> prompts = {std::vector<int32_t>(37), std::vector<int32_t>(64),
                                               std::vector<int32_t>(100),
                                               std::vector<int32_t>(120)};
  for (auto& p : prompts)
    for (int32_t& t : p) t = static_cast<int32_t>(rng() % vocab);
  auto run = [&](const LlamaModel& model) {
    auto cache = model.NewKvCache(128, 4);
    std::vector<Tensor> out;
    const SequenceId a = *cache->AddSequence();
    const SequenceId b = *cache->AddSequence();
    const SequenceId c = *cache->AddSequence();
    const SequenceId d = *cache->AddSequence();
    std::vector<SequenceChunk> first = {{a, std::span<const int32_t>(prompts[0]).first(20), true},
                                        {b, prompts[1], true},
                                        {c, prompts[2], true},
                                        {d, prompts[3], true}};
    auto l1 = model.Forward(first, *cache);
    EXPECT_TRUE(l1.ok()) << l1.status();
    std::vector<SequenceChunk> second = {
        {a, std::span<const int32_t>(prompts[0]).subspan(20), true}};
    auto l2 = model.Forward(second, *cache);
    EXPECT_TRUE(l2.ok()) << l2.status();
    out.push_back(*std::move(l1));
    out.push_back(*std::move(l2));
    return out;
  };
  const std::vector<Tensor> expected = run(cpu);
  const std::vector<Tensor> actual = run(gpu);
  double diff = 0, norm = 0;
  int64_t agree = 0, rows = 0, decisive = 0, decisive_agree = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(expected[i].shape(), actual[i].shape());
    for (int64_t r = 0; r < expected[i].dim(0); ++r, ++rows) {
      const float* want = expected[i].row(r);
      double row_diff = 0;
      float best = -INFINITY, second = -INFINITY;
      for (int64_t v = 0; v < vocab; ++v) {
        const double d = actual[i].row(r)[v] - want[v];
        row_diff += d * d;
        norm += static_cast<double>(want[v]) * want[v];
        if (want[v] > best) {
          second = best;
          best = want[v];
        } else if (want[v] > second) {
          second = want[v];
        }
      }
      diff += row_diff;
      const bool same = Argmax({actual[i].row(r), static_cast<size_t>(vocab)}) ==
                        Argmax({want, static_cast<size_t>(vocab)});
      agree += same;
      if (best - second > kDecisiveMargin * std::sqrt(row_diff / vocab)) {
        ++decisive;
        decisive_agree += same;
      }
    }
  }
  Comparison c;
  c.relative_error = std::sqrt(diff / norm);
  c.top1 = static_cast<double>(agree) / rows;
  c.decisive_top1 = decisive > 0 ? static_cast<double>(decisive_agree) / decisive : 0.0;
  c.decisive_fraction = static_cast<double>(decisive) / rows;
  c.decisive_positions = decisive;
  c.positions = rows;
  return c;
}

}  // namespace flatfleet::engine
