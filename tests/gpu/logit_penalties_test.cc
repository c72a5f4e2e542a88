// The device penalties (logit_penalties.h) against engine::Sampler, the CPU reference: the
// processed logits bit for bit, and the tokens the device sampler draws from them equal to the
// tokens it draws from the CPU's processed logits (greedy rows also to engine::Sampler's own
// choice). Rows with and without each feature, the real vocabulary and small ones.
#include "kernels/cuda/logit_penalties.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "kernels/cuda/sampling.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/ops_test_util.h"
#include "worker/sampling/sampler.h"

namespace flatfleet::cuda {
namespace {

using testing::DeviceBuffer;

// One processed row: the request's CPU sampler (fed its prompt and completion) and the entries
// the host hands the device for it.
struct PenalisedRow {
  engine::SamplingParams params;
  std::vector<int32_t> prompt;
  std::vector<int32_t> completion;
  std::vector<int32_t> stop_ids;
  std::vector<LogitPenaltyEntry> entries;
};

// Feature mix by row index: 0 none, 1 repetition, 2 frequency, 3 presence, 4 all three,
// 5 min_tokens only, 6 all and min_tokens, 7 repetition < 1 with negative frequency, 8 all with
// min_tokens already reached (no mask).
PenalisedRow MakeRow(int64_t index, int64_t vocab, std::mt19937_64& rng) {
  PenalisedRow row;
  engine::SamplingParams& p = row.params;
  const int feature = static_cast<int>(index % 9);
  if (feature == 1 || feature == 4 || feature == 6 || feature == 8) p.repetition_penalty = 1.3f;
  if (feature == 2 || feature == 4 || feature == 6 || feature == 8) p.frequency_penalty = 0.45f;
  if (feature == 3 || feature == 4 || feature == 6 || feature == 8) p.presence_penalty = 0.7f;
  if (feature == 7) {
    p.repetition_penalty = 0.8f;
    p.frequency_penalty = -0.3f;
  }
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(vocab - 1));
  // Few distinct tokens in a small vocabulary: repeats and prompt/completion overlap.
  const int prompt_length = 1 + static_cast<int>(rng() % 40);
  // At least one completion token, so the frequency and presence penalties change some logit.
  const int completion_length = 1 + static_cast<int>(rng() % 30);
  for (int i = 0; i < prompt_length; ++i) row.prompt.push_back(token(rng));
  for (int i = 0; i < completion_length; ++i) row.completion.push_back(token(rng));
  row.prompt.push_back(-1);  // outside the vocabulary: ignored by both
  row.prompt.push_back(static_cast<int32_t>(vocab));
  if (feature == 5 || feature == 6 || feature == 8) {
    p.min_tokens = feature == 8 ? completion_length : completion_length + 3;
    row.stop_ids = {token(rng), token(rng), static_cast<int32_t>(vocab - 1)};
  }
  // The entries, as the batcher builds them: each distinct token once.
  std::map<int32_t, LogitPenaltyEntry> by_token;
  const bool penalties =
      p.repetition_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f;
  if (penalties) {
    for (int32_t t : row.prompt) {
      by_token[t].token = t;
      by_token[t].flags |= LogitPenaltyEntry::kInPrompt;
    }
    for (int32_t t : row.completion) {
      by_token[t].token = t;
      ++by_token[t].completion_count;
    }
  }
  if (completion_length < p.min_tokens) {
    for (int32_t t : row.stop_ids) {
      by_token[t].token = t;
      by_token[t].flags |= LogitPenaltyEntry::kMasked;
    }
  }
  for (const auto& [t, entry] : by_token) row.entries.push_back(entry);
  std::shuffle(row.entries.begin(), row.entries.end(), rng);
  return row;
}

engine::Sampler CpuSampler(const PenalisedRow& row) {
  engine::Sampler sampler(row.params, row.prompt, row.stop_ids);
  for (int32_t t : row.completion) sampler.Record(t);
  return sampler;
}

// Runs the penalty kernel: processed row j from logits row source[j].
std::vector<float> RunPenalties(const std::vector<float>& logits, int64_t vocab, int64_t stride,
                                const std::vector<int32_t>& source,
                                const std::vector<PenalisedRow>& rows) {
  std::vector<float> repetition, frequency, presence;
  std::vector<int32_t> offsets = {0};
  std::vector<LogitPenaltyEntry> entries;
  for (const PenalisedRow& row : rows) {
    repetition.push_back(row.params.repetition_penalty);
    frequency.push_back(row.params.frequency_penalty);
    presence.push_back(row.params.presence_penalty);
    entries.insert(entries.end(), row.entries.begin(), row.entries.end());
    offsets.push_back(static_cast<int32_t>(entries.size()));
  }
  entries.push_back({});  // never empty: a valid pointer even without entries
  const int64_t n = static_cast<int64_t>(rows.size());
  DeviceBuffer<float> d_logits(logits), d_repetition(repetition), d_frequency(frequency),
      d_presence(presence);
  DeviceBuffer<int32_t> d_source(source), d_offsets(offsets);
  DeviceBuffer<LogitPenaltyEntry> d_entries(entries);
  DeviceBuffer<float> d_out(testing::Poisoned<float>(n * vocab));
  const LogitPenalties args{.logits = d_logits.get(),
                            .vocab = vocab,
                            .logits_row_stride = stride,
                            .rows = n,
                            .source_row = d_source.get(),
                            .repetition_penalty = d_repetition.get(),
                            .frequency_penalty = d_frequency.get(),
                            .presence_penalty = d_presence.get(),
                            .entry_offsets = d_offsets.get(),
                            .entries = d_entries.get(),
                            .processed = d_out.get()};
  const absl::Status status = ApplyLogitPenalties(args, nullptr);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return d_out.ToHost();
}

uint32_t Bits(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  return bits;
}

class LogitPenaltiesTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(LogitPenaltiesTest, ProcessedLogitsAreTheCpuSamplersBitForBit) {
  FF_SKIP_WITHOUT_GPU();
  const int64_t vocab = GetParam();
  testing::SeededRng rng;
  const int64_t logit_rows = 13;
  const int64_t stride = vocab + 5;
  // Gaussian logits with a spread like a model's, some exact zeros (the v > 0 branch).
  std::vector<float> logits = rng.Gaussian(logit_rows * stride, 4.0f);
  for (int64_t i = 0; i < logit_rows * stride; i += 17) logits[i] = 0.0f;
  std::vector<int32_t> source;
  std::vector<PenalisedRow> rows;
  for (int64_t j = 0; j < 11; ++j) {
    source.push_back(static_cast<int32_t>((j * 5 + 3) % logit_rows));
    rows.push_back(MakeRow(j, vocab, rng.rng()));
  }
  const std::vector<float> processed = RunPenalties(logits, vocab, stride, source, rows);
  for (size_t j = 0; j < rows.size(); ++j) {
    SCOPED_TRACE(::testing::Message() << "row " << j);
    const std::span<const float> raw(logits.data() + source[j] * stride, vocab);
    const std::vector<float> expected = CpuSampler(rows[j]).Processed(raw);
    int64_t changed = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      ASSERT_EQ(Bits(processed[j * vocab + v]), Bits(expected[v]))
          << "logit " << v << ": " << processed[j * vocab + v] << " vs " << expected[v];
      changed += expected[v] != raw[v];
    }
    // Row 0 of each nine has no feature; every other row changes some logit.
    if (j % 9 != 0) {
      EXPECT_GT(changed, 0);
    }
  }
}

TEST_P(LogitPenaltiesTest, DeviceDrawsFromProcessedRowsAsFromTheCpusProcessedLogits) {
  FF_SKIP_WITHOUT_GPU();
  const int64_t vocab = GetParam();
  testing::SeededRng rng;
  const int64_t rows = 18;
  std::vector<float> logits = rng.Gaussian(rows * vocab, 3.0f);
  // Every other row processed, in a shuffled order of the processed copies.
  std::vector<int32_t> source;
  std::vector<PenalisedRow> penalised;
  std::vector<int32_t> processed_row(rows, -1);
  for (int64_t r = 1; r < rows; r += 2) source.push_back(static_cast<int32_t>(r));
  std::shuffle(source.begin(), source.end(), rng.rng());
  for (size_t j = 0; j < source.size(); ++j) {
    processed_row[source[j]] = static_cast<int32_t>(j);
    penalised.push_back(MakeRow(static_cast<int64_t>(j) % 8 + 1, vocab, rng.rng()));
  }
  const std::vector<float> processed = RunPenalties(logits, vocab, vocab, source, penalised);
  // The CPU's processed logits in place of the raw rows.
  std::vector<float> cpu_logits = logits;
  std::vector<engine::Sampler> samplers;
  for (size_t j = 0; j < source.size(); ++j) {
    samplers.push_back(CpuSampler(penalised[j]));
    const std::span<const float> raw(logits.data() + source[j] * vocab, vocab);
    const std::vector<float> expected = samplers.back().Processed(raw);
    std::copy(expected.begin(), expected.end(), cpu_logits.begin() + source[j] * vocab);
  }
  // Rows of three kinds: greedy, seeded temperature, seeded top-k + top-p.
  std::vector<float> temperature(rows), top_p(rows, 1.0f);
  std::vector<int32_t> top_k(rows, 0);
  std::vector<uint64_t> seed(rows), step(rows);
  for (int64_t r = 0; r < rows; ++r) {
    temperature[r] = r % 3 == 0 ? 0.0f : 0.9f;
    if (r % 3 == 2) {
      top_k[r] = 40;
      top_p[r] = 0.9f;
    }
    seed[r] = rng.rng()();
    step[r] = r;
  }
  DeviceBuffer<float> d_temperature(temperature), d_top_p(top_p);
  DeviceBuffer<int32_t> d_top_k(top_k), d_processed_row(processed_row);
  DeviceBuffer<uint64_t> d_seed(seed), d_step(step);
  DeviceBuffer<float> d_processed(processed);
  auto sample = [&](const std::vector<float>& input, bool use_processed) {
    DeviceBuffer<float> d_logits(input);
    DeviceBuffer<int32_t> d_tokens(std::vector<int32_t>(rows, -7));
    DeviceBuffer<float> d_logprobs(testing::Poisoned<float>(rows));
    DeviceSampling args{.logits = d_logits.get(),
                        .rows = rows,
                        .vocab = vocab,
                        .temperature = d_temperature.get(),
                        .top_k = d_top_k.get(),
                        .top_p = d_top_p.get(),
                        .seed = d_seed.get(),
                        .step = d_step.get(),
                        .tokens = d_tokens.get(),
                        .logprobs = d_logprobs.get()};
    if (use_processed) {
      args.processed_logits = d_processed.get();
      args.processed_row = d_processed_row.get();
    }
    const absl::Status status = SampleTokens(args, nullptr);
    EXPECT_TRUE(status.ok()) << status;
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return std::make_pair(d_tokens.ToHost(), d_logprobs.ToHost());
  };
  const auto [device_tokens, device_logprobs] = sample(logits, true);
  const auto [cpu_processed_tokens, unused] = sample(cpu_logits, false);
  EXPECT_EQ(device_tokens, cpu_processed_tokens);
  for (int64_t r = 0; r < rows; ++r) {
    const std::span<const float> raw(logits.data() + r * vocab, vocab);
    if (temperature[r] == 0.0f) {
      // Greedy: engine::Sampler's own token (Argmax of its processed logits, or of the raw row).
      const int32_t expected = processed_row[r] >= 0 ? samplers[processed_row[r]].Sample(raw).token
                                                     : engine::Argmax(raw);
      EXPECT_EQ(device_tokens[r], expected) << "row " << r;
    }
    // The logprob stays under the raw logits (float32 against the CPU's double: see
    // top_logprobs_test.cc for the 1e-4 bound).
    ASSERT_GE(device_tokens[r], 0);
    EXPECT_NEAR(device_logprobs[r], engine::TokenLogSoftmax(raw, device_tokens[r]), 1e-4)
        << "row " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(Vocabularies, LogitPenaltiesTest,
                         ::testing::Values(int64_t{7}, int64_t{61}, int64_t{1000},
                                           int64_t{128256}));

TEST(LogitPenaltiesTest, RejectsBadArguments) {
  FF_SKIP_WITHOUT_GPU();
  DeviceBuffer<float> logits(64), out(64);
  DeviceBuffer<int32_t> source(std::vector<int32_t>{0}), offsets(std::vector<int32_t>{0, 0});
  const LogitPenalties good{.logits = logits.get(),
                            .vocab = 64,
                            .rows = 1,
                            .source_row = source.get(),
                            .entry_offsets = offsets.get(),
                            .processed = out.get()};
  EXPECT_TRUE(ApplyLogitPenalties(good, nullptr).ok());
  LogitPenalties bad = good;
  bad.vocab = 0;
  EXPECT_EQ(ApplyLogitPenalties(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = good;
  bad.logits_row_stride = 10;
  EXPECT_EQ(ApplyLogitPenalties(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = good;
  bad.processed = nullptr;
  EXPECT_EQ(ApplyLogitPenalties(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = good;
  bad.processed = logits.get();
  EXPECT_EQ(ApplyLogitPenalties(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = good;
  bad.source_row = nullptr;
  EXPECT_EQ(ApplyLogitPenalties(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
}  // namespace flatfleet::cuda
