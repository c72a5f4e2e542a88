// The device top logprobs (top_logprobs.h) against engine::TopLogprobs / TokenLogSoftmax, the
// CPU reference, for both selection algorithms: the ids equal the CPU's exactly (both order by
// the same float comparisons, lower id first on equal logits, so planted ties must come out
// identically too), the values within 1e-4 of the CPU's double log-softmax (float32 max and
// log-sum-exp: relative ~1e-6 over a 128K row), and the chosen token's value bit-identical to
// what SampleTokens reports for it.
#include "kernels/cuda/top_logprobs.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/cuda/sampling.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/ops_test_util.h"
#include "worker/sampling/sampler.h"

namespace flatfleet::cuda {
namespace {

using testing::DeviceBuffer;

constexpr double kLogprobTolerance = 1e-4;
constexpr float kInf = std::numeric_limits<float>::infinity();

struct TopResult {
  std::vector<float> chosen;
  std::vector<int32_t> ids;     // [rows, kMaxTopLogprobs]
  std::vector<float> values;    // [rows, kMaxTopLogprobs]
  std::vector<int32_t> tokens;  // SampleTokens's greedy tokens of every logit row
  std::vector<float> sampler_logprobs;
};

TopResult RunTopLogprobs(const std::vector<float>& logits, int64_t logit_rows, int64_t vocab,
                         int64_t stride, const std::vector<int32_t>& source,
                         const std::vector<int32_t>& count, TopLogprobsAlgorithm algorithm) {
  const int64_t rows = static_cast<int64_t>(source.size());
  DeviceBuffer<float> d_logits(logits);
  DeviceBuffer<int32_t> d_tokens(std::vector<int32_t>(logit_rows, -7));
  DeviceBuffer<float> d_sampler_logprobs(testing::Poisoned<float>(logit_rows));
  const DeviceSampling sampling{.logits = d_logits.get(),
                                .rows = logit_rows,
                                .vocab = vocab,
                                .logits_row_stride = stride,
                                .tokens = d_tokens.get(),
                                .logprobs = d_sampler_logprobs.get()};
  EXPECT_TRUE(SampleTokens(sampling, nullptr).ok());
  DeviceBuffer<int32_t> d_source(source), d_count(count);
  DeviceBuffer<float> d_chosen(testing::Poisoned<float>(rows));
  DeviceBuffer<int32_t> d_ids(testing::Poisoned<int32_t>(rows * kMaxTopLogprobs));
  DeviceBuffer<float> d_values(testing::Poisoned<float>(rows * kMaxTopLogprobs));
  const TopLogprobs args{.logits = d_logits.get(),
                         .vocab = vocab,
                         .logits_row_stride = stride,
                         .rows = rows,
                         .source_row = d_source.get(),
                         .count = d_count.get(),
                         .tokens = d_tokens.get(),
                         .chosen_logprob = d_chosen.get(),
                         .top_tokens = d_ids.get(),
                         .top_logprobs = d_values.get(),
                         .algorithm = algorithm};
  const absl::Status status = ComputeTopLogprobs(args, nullptr);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return {d_chosen.ToHost(), d_ids.ToHost(), d_values.ToHost(), d_tokens.ToHost(),
          d_sampler_logprobs.ToHost()};
}

// Row kinds by index: 0 Gaussian, 1 logits rounded to multiples of 0.5 (many exact ties at every
// cut), 2 flat (all equal but a few: more ties than the radix path keeps, its fallback), 3
// Gaussian with -inf entries and signed zeros at the top.
std::vector<float> MakeLogits(int64_t rows, int64_t vocab, int64_t stride,
                              testing::SeededRng& rng) {
  std::vector<float> logits = rng.Gaussian(rows * stride, 3.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = logits.data() + r * stride;
    switch (r % 4) {
      case 1:
        for (int64_t v = 0; v < vocab; ++v) row[v] = std::round(row[v] * 2.0f) / 2.0f;
        break;
      case 2:
        for (int64_t v = 0; v < vocab; ++v) row[v] = -1.5f;
        for (int64_t v = 3; v < vocab; v += vocab / 3 + 1) row[v] = 2.0f;
        break;
      case 3:
        for (int64_t v = 0; v < vocab; v += 5) row[v] = -kInf;
        row[vocab / 2] = 20.0f;
        row[vocab - 1] = 20.0f;
        if (vocab > 4) {
          row[1] = 0.0f;  // +0 and -0 are equal logits: id order
          row[4] = -0.0f;
          for (int64_t v = 0; v < vocab; ++v) {
            if (v != 1 && v != 4 && row[v] >= 0.0f && row[v] < 20.0f) row[v] = -row[v];
          }
        }
        break;
      default:
        break;
    }
  }
  return logits;
}

class TopLogprobsTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(TopLogprobsTest, EqualTheCpuSamplersTopLogprobs) {
  FF_SKIP_WITHOUT_GPU();
  const int64_t vocab = GetParam();
  testing::SeededRng rng;
  const int64_t logit_rows = 16;
  const int64_t stride = vocab + 3;
  const std::vector<float> logits = MakeLogits(logit_rows, vocab, stride, rng);
  // Listed rows in a shuffled order with counts 0 ... 20 (more than a small vocabulary).
  std::vector<int32_t> source, count;
  const int32_t counts[] = {0, 1, 3, 20, 5, 20, 2, 19};
  for (int64_t j = 0; j < 14; ++j) {
    source.push_back(static_cast<int32_t>((j * 7 + 2) % logit_rows));
    count.push_back(counts[j % 8]);
  }
  for (const TopLogprobsAlgorithm algorithm :
       {TopLogprobsAlgorithm::kRadixSelect, TopLogprobsAlgorithm::kRepeatedArgmax}) {
    SCOPED_TRACE(algorithm == TopLogprobsAlgorithm::kRadixSelect ? "radix" : "reference");
    const TopResult got =
        RunTopLogprobs(logits, logit_rows, vocab, stride, source, count, algorithm);
    for (size_t j = 0; j < source.size(); ++j) {
      SCOPED_TRACE(::testing::Message() << "listed row " << j << ", logits row " << source[j]);
      const std::span<const float> row(logits.data() + source[j] * stride, vocab);
      const int32_t token = got.tokens[source[j]];
      ASSERT_EQ(token, engine::Argmax(row));
      EXPECT_NEAR(got.chosen[j], engine::TokenLogSoftmax(row, token), kLogprobTolerance);
      EXPECT_EQ(std::bit_cast<uint32_t>(got.chosen[j]),
                std::bit_cast<uint32_t>(got.sampler_logprobs[source[j]]));
      const std::vector<engine::TokenLogprob> want = engine::TopLogprobs(row, count[j]);
      for (int s = 0; s < kMaxTopLogprobs; ++s) {
        const int32_t id = got.ids[j * kMaxTopLogprobs + s];
        const float value = got.values[j * kMaxTopLogprobs + s];
        if (s < static_cast<int>(want.size())) {
          ASSERT_EQ(id, want[s].token) << "place " << s;
          if (std::isinf(want[s].logprob)) {
            EXPECT_EQ(value, want[s].logprob) << "place " << s;
          } else {
            EXPECT_NEAR(value, want[s].logprob, kLogprobTolerance) << "place " << s;
          }
        } else {
          EXPECT_EQ(id, -1) << "place " << s;
          EXPECT_EQ(value, -kInf) << "place " << s;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Vocabularies, TopLogprobsTest,
                         ::testing::Values(int64_t{7}, int64_t{33}, int64_t{1000}, int64_t{32000},
                                           int64_t{128256}));

TEST(TopLogprobsTest, RadixSelectEqualsTheReferenceOnRandomRows) {
  FF_SKIP_WITHOUT_GPU();
  testing::SeededRng rng;
  const int64_t vocab = 128256;
  const int64_t rows = 24;
  const std::vector<float> logits = MakeLogits(rows, vocab, vocab, rng);
  std::vector<int32_t> source, count;
  for (int64_t r = 0; r < rows; ++r) {
    source.push_back(static_cast<int32_t>(r));
    count.push_back(static_cast<int32_t>(1 + rng.rng()() % kMaxTopLogprobs));
  }
  const TopResult radix =
      RunTopLogprobs(logits, rows, vocab, vocab, source, count, TopLogprobsAlgorithm::kRadixSelect);
  const TopResult reference = RunTopLogprobs(logits, rows, vocab, vocab, source, count,
                                             TopLogprobsAlgorithm::kRepeatedArgmax);
  EXPECT_EQ(radix.ids, reference.ids);
  for (size_t i = 0; i < radix.values.size(); ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(radix.values[i]),
              std::bit_cast<uint32_t>(reference.values[i]))
        << i;
  }
}

TEST(TopLogprobsTest, RejectsBadArguments) {
  FF_SKIP_WITHOUT_GPU();
  DeviceBuffer<float> logits(64), chosen(1), values(kMaxTopLogprobs);
  DeviceBuffer<int32_t> source(std::vector<int32_t>{0}), count(std::vector<int32_t>{3}),
      tokens(std::vector<int32_t>{0}), ids(kMaxTopLogprobs);
  const TopLogprobs good{.logits = logits.get(),
                         .vocab = 64,
                         .rows = 1,
                         .source_row = source.get(),
                         .count = count.get(),
                         .tokens = tokens.get(),
                         .chosen_logprob = chosen.get(),
                         .top_tokens = ids.get(),
                         .top_logprobs = values.get()};
  EXPECT_TRUE(ComputeTopLogprobs(good, nullptr).ok());
  TopLogprobs bad = good;
  bad.vocab = -1;
  EXPECT_EQ(ComputeTopLogprobs(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = good;
  bad.logits_row_stride = 3;
  EXPECT_EQ(ComputeTopLogprobs(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = good;
  bad.top_tokens = nullptr;
  EXPECT_EQ(ComputeTopLogprobs(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = good;
  bad.algorithm = static_cast<TopLogprobsAlgorithm>(7);
  EXPECT_EQ(ComputeTopLogprobs(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
}  // namespace flatfleet::cuda
