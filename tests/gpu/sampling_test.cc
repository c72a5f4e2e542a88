// The CUDA sampler against a reference written here: a plain sort of the vocabulary in double
// precision, with the GPU's documented tie rule (every token equal to the top-k or top-p cut's
// logit is kept; see kernels/cuda/sampling.h). Covers greedy (bit-exact with engine::Argmax),
// candidate sets over many parameter combinations and vocabulary sizes, the sampled distribution
// (chi-square), determinism across batch positions, radix select == bisection, and logprobs.
#include "kernels/cuda/sampling.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/ops_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::DeviceBuffer;

constexpr float kInf = std::numeric_limits<float>::infinity();

struct Request {
  float temperature = 0.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
  uint64_t step = 0;
};

// engine::Argmax (worker/sampling/sampler.cc): std::max_element, the first index on ties.
int32_t Argmax(const float* logits, int64_t n) {
  return static_cast<int32_t>(std::max_element(logits, logits + n) - logits);
}

// Log-softmax of `token` at temperature 1, in double.
double LogSoftmax(const float* logits, int64_t n, int32_t token) {
  double max_logit = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) max_logit = std::max(max_logit, static_cast<double>(logits[i]));
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - max_logit);
  return logits[token] - max_logit - std::log(sum);
}

// The tokens a request may draw, with their probabilities. `slack` > 0 widens the top-p target
// to (top_p + slack) * mass, a superset that absorbs the GPU's float exp and 2^-40 fixed-point
// weights (relative errors ~1e-6) when a cut falls within that margin.
struct Candidates {
  std::vector<int32_t> ids;   // by decreasing logit, then id
  std::vector<double> probs;  // normalised over ids
};
Candidates ReferenceCandidates(const float* logits, int64_t n, const Request& r, double slack) {
  if (r.temperature <= 0.0f) return {{Argmax(logits, n)}, {1.0}};
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  const int64_t k = r.top_k > 0 ? std::min<int64_t>(r.top_k, n) : n;
  // Keep every token equal to the k-th largest logit.
  const float kth = logits[order[k - 1]];
  int64_t kept = k;
  while (kept < n && logits[order[kept]] == kth) ++kept;
  const double max_logit = logits[order[0]];
  std::vector<double> weights(kept);
  double total = 0.0;
  for (int64_t j = 0; j < kept; ++j) {
    weights[j] = std::exp((logits[order[j]] - max_logit) / static_cast<double>(r.temperature));
    total += weights[j];
  }
  if (r.top_p < 1.0f) {
    const double target = std::min(1.0, static_cast<double>(r.top_p) + slack) * total;
    double cumulative = 0.0;
    int64_t cut = 0;
    while (cut < kept) {
      cumulative += weights[cut++];
      if (cumulative >= target) break;
    }
    const float threshold = logits[order[cut - 1]];
    while (cut < kept && logits[order[cut]] == threshold) ++cut;  // ties at the cut stay
    kept = cut;
  }
  Candidates c;
  c.ids.assign(order.begin(), order.begin() + kept);
  double kept_total = 0.0;
  for (int64_t j = 0; j < kept; ++j) kept_total += weights[j];
  for (int64_t j = 0; j < kept; ++j) c.probs.push_back(weights[j] / kept_total);
  return c;
}

struct Result {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
};

// Samples every row of `logits` ([rows, stride], the first `vocab` of each row used).
Result RunSampler(const std::vector<float>& logits, int64_t rows, int64_t vocab, int64_t stride,
                  const std::vector<Request>& requests, SamplingAlgorithm algorithm,
                  bool with_logprobs = true) {
  std::vector<float> temperature, top_p;
  std::vector<int32_t> top_k;
  std::vector<uint64_t> seed, step;
  for (const Request& r : requests) {
    temperature.push_back(r.temperature);
    top_k.push_back(r.top_k);
    top_p.push_back(r.top_p);
    seed.push_back(r.seed);
    step.push_back(r.step);
  }
  DeviceBuffer<float> d_logits(logits), d_temperature(temperature), d_top_p(top_p);
  DeviceBuffer<int32_t> d_top_k(top_k);
  DeviceBuffer<uint64_t> d_seed(seed), d_step(step);
  DeviceBuffer<int32_t> d_tokens(std::vector<int32_t>(rows, -7));
  DeviceBuffer<float> d_logprobs(testing::Poisoned<float>(rows));
  const DeviceSampling args{.logits = d_logits.get(),
                            .rows = rows,
                            .vocab = vocab,
                            .logits_row_stride = stride,
                            .temperature = d_temperature.get(),
                            .top_k = d_top_k.get(),
                            .top_p = d_top_p.get(),
                            .seed = d_seed.get(),
                            .step = d_step.get(),
                            .tokens = d_tokens.get(),
                            .logprobs = with_logprobs ? d_logprobs.get() : nullptr,
                            .algorithm = algorithm};
  const absl::Status status = SampleTokens(args, nullptr);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return {d_tokens.ToHost(), d_logprobs.ToHost()};
}

// Logprobs: float32 max and sum-exp over the row (relative error ~1e-6, so ~1e-6 in the log)
// against double: 1e-4 leaves ample room.
constexpr double kLogprobTolerance = 1e-4;

// ---- Greedy ------------------------------------------------------------------------------------

class SamplingGpuTest : public ::testing::TestWithParam<int64_t> {
 protected:
  testing::SeededRng random_;
};

TEST_P(SamplingGpuTest, GreedyEqualsArgmaxWithPlantedTies) {
  FF_SKIP_WITHOUT_GPU();
  const int64_t vocab = GetParam();
  const int64_t rows = 12;
  std::vector<float> logits = random_.Gaussian(rows * vocab, 3.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = logits.data() + r * vocab;
    const float top = *std::max_element(row, row + vocab) + 1.0f;
    switch (r % 6) {
      case 0:  // several ties at the maximum, at random places
        for (int t = 0; t < 4; ++t) row[random_.UniformInt(0, vocab - 1)] = top;
        break;
      case 1:  // ties at the last index and one before it
        row[vocab - 1] = top;
        row[random_.UniformInt(0, vocab - 2)] = top;
        break;
      case 2:  // a tie at index 0
        row[0] = top;
        row[random_.UniformInt(1, vocab - 1)] = top;
        break;
      case 3:  // NaNs away from index 0 are skipped by std::max_element
        for (int t = 0; t < 5; ++t) row[random_.UniformInt(1, vocab - 1)] = std::nanf("");
        break;
      case 4:  // -inf masking of most of the row, -0 and +0 as the maximum
        for (int64_t i = 0; i < vocab; ++i) row[i] = i % 3 == 0 ? -kInf : -1.0f - row[i] * row[i];
        row[random_.UniformInt(0, vocab - 1)] = -0.0f;
        row[random_.UniformInt(0, vocab - 1)] = 0.0f;
        break;
      default:  // distinct values
        break;
    }
  }
  std::vector<Request> requests(rows);  // temperature 0
  requests[5].temperature = -1.0f;      // negative is greedy too
  for (const auto algorithm : {SamplingAlgorithm::kRadixSelect, SamplingAlgorithm::kBisection}) {
    const Result result = RunSampler(logits, rows, vocab, vocab, requests, algorithm);
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = logits.data() + r * vocab;
      ASSERT_EQ(result.tokens[r], Argmax(row, vocab)) << "row " << r;
      if (r % 6 != 3) {  // NaN rows have no defined logprob
        EXPECT_NEAR(result.logprobs[r], LogSoftmax(row, vocab, result.tokens[r]), kLogprobTolerance)
            << "row " << r;
      }
    }
  }
}

TEST(SamplingGpuTest, GreedyFollowsArgmaxOnDegenerateRows) {
  FF_SKIP_WITHOUT_GPU();
  const int64_t vocab = 300;
  const float nan = std::nanf("");
  std::vector<float> logits(4 * vocab, 1.0f);
  logits[0] = nan;  // row 0: NaN at index 0 is never replaced: 0
  logits[7] = 5.0f;
  for (int64_t i = 0; i < vocab; ++i) logits[vocab + i] = -kInf;    // row 1: all -inf: 0
  for (int64_t i = 0; i < vocab; ++i) logits[2 * vocab + i] = nan;  // row 2: all NaN: 0
  logits[3 * vocab + 100] = kInf;                                   // row 3: +inf wins
  logits[3 * vocab + 200] = kInf;
  const std::vector<Request> requests(4);
  const Result result =
      RunSampler(logits, 4, vocab, vocab, requests, SamplingAlgorithm::kRadixSelect);
  for (int64_t r = 0; r < 4; ++r) {
    EXPECT_EQ(result.tokens[r], Argmax(logits.data() + r * vocab, vocab)) << "row " << r;
  }
  EXPECT_EQ(result.tokens[3], 100);
}

// ---- Candidate sets ----------------------------------------------------------------------------

// Row kinds: peaked Gaussian logits, nearly flat ones (top-p keeps much of the vocabulary), values
// on a coarse grid (many ties), and -inf masking.
std::vector<float> MixedLogits(testing::SeededRng& random, int64_t rows, int64_t vocab) {
  std::vector<float> logits(rows * vocab);
  for (int64_t r = 0; r < rows; ++r) {
    const int kind = static_cast<int>(r % 4);
    const std::vector<float> g = random.Gaussian(vocab, kind == 1 ? 0.05f : 2.5f);
    for (int64_t i = 0; i < vocab; ++i) {
      float v = g[i];
      if (kind == 2) v = std::round(v * 2.0f) / 2.0f;
      if (kind == 3 && i % 4 != 1) v = -kInf;
      logits[r * vocab + i] = v;
    }
  }
  return logits;
}

std::vector<Request> MixedRequests(testing::SeededRng& random, int64_t rows) {
  static constexpr float kTemperatures[] = {0.6f, 1.0f, 1.5f};
  static constexpr int32_t kTopK[] = {0, 0, 1, 7, 50, 2000};
  static constexpr float kTopP[] = {1.0f, 1.0f, 0.95f, 0.6f, 0.2f};
  std::vector<Request> requests(rows);
  for (auto& q : requests) {
    q.temperature = kTemperatures[random.UniformInt(0, 2)];
    q.top_k = kTopK[random.UniformInt(0, 5)];
    q.top_p = kTopP[random.UniformInt(0, 4)];
    q.seed = random.rng()();
    q.step = random.UniformInt(0, 1000);
  }
  return requests;
}

TEST_P(SamplingGpuTest, SampledTokensStayInReferenceCandidates) {
  FF_SKIP_WITHOUT_GPU();
  const int64_t vocab = GetParam();
  const int64_t rows = 24;
  const std::vector<float> logits = MixedLogits(random_, rows, vocab);
  std::vector<Request> requests = MixedRequests(random_, rows);
  std::vector<std::set<int32_t>> allowed(rows);
  for (int64_t r = 0; r < rows; ++r) {
    const Candidates c = ReferenceCandidates(logits.data() + r * vocab, vocab, requests[r], 1e-5);
    allowed[r].insert(c.ids.begin(), c.ids.end());
  }
  for (int draw = 0; draw < 6; ++draw) {
    SCOPED_TRACE("draw " + std::to_string(draw));
    const Result radix =
        RunSampler(logits, rows, vocab, vocab, requests, SamplingAlgorithm::kRadixSelect);
    const Result bisection =
        RunSampler(logits, rows, vocab, vocab, requests, SamplingAlgorithm::kBisection);
    for (int64_t r = 0; r < rows; ++r) {
      const Request& q = requests[r];
      SCOPED_TRACE("row " + std::to_string(r) + " T " + std::to_string(q.temperature) + " k " +
                   std::to_string(q.top_k) + " p " + std::to_string(q.top_p));
      ASSERT_TRUE(allowed[r].count(radix.tokens[r])) << "token " << radix.tokens[r];
      // Both searches find the same integer thresholds, so the same token.
      ASSERT_EQ(radix.tokens[r], bisection.tokens[r]);
      EXPECT_NEAR(radix.logprobs[r], LogSoftmax(logits.data() + r * vocab, vocab, radix.tokens[r]),
                  kLogprobTolerance);
    }
    for (auto& q : requests) ++q.step;
  }
}

INSTANTIATE_TEST_SUITE_P(Vocabularies, SamplingGpuTest,
                         ::testing::Values(int64_t{512}, int64_t{32000}, int64_t{128256}));

// top_k = 1 and a vanishing top_p leave only the argmax, whatever the draw.
TEST(SamplingGpuTest, TopKOneAndTinyTopPGiveTheArgmax) {
  FF_SKIP_WITHOUT_GPU();
  testing::SeededRng random;
  const int64_t vocab = 128256, rows = 4;
  std::vector<float> logits = random.Gaussian(rows * vocab, 2.0f);
  for (int64_t r = 0; r < rows; ++r) logits[r * vocab + random.UniformInt(0, vocab - 1)] = 20.0f;
  std::vector<Request> requests(rows);
  for (int64_t r = 0; r < rows; ++r) {
    requests[r] = {.temperature = 1.5f, .seed = random.rng()(), .step = 3};
    if (r % 2 == 0) requests[r].top_k = 1;
    if (r % 2 == 1) requests[r].top_p = r == 1 ? 1e-9f : 0.0f;
  }
  const Result result =
      RunSampler(logits, rows, vocab, vocab, requests, SamplingAlgorithm::kRadixSelect);
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_EQ(result.tokens[r], Argmax(logits.data() + r * vocab, vocab)) << "row " << r;
  }
}

// Ties at a cut are all kept: four tokens share the largest logit, top_k = 2 (and top_p small
// enough for one of them) still draws all four, and nothing else.
TEST(SamplingGpuTest, TiesAtTheCutAreAllKept) {
  FF_SKIP_WITHOUT_GPU();
  testing::SeededRng random;
  const int64_t vocab = 64, rows = 4000;
  const std::set<int32_t> tied = {3, 10, 20, 40};
  std::vector<float> row(vocab);
  for (auto& v : row) v = random.UniformFloat(-3.0f, 0.0f);
  for (int32_t id : tied) row[id] = 5.0f;
  std::vector<float> logits;
  for (int64_t r = 0; r < rows; ++r) logits.insert(logits.end(), row.begin(), row.end());
  std::vector<Request> requests(rows);
  for (int64_t r = 0; r < rows; ++r) {
    requests[r] = {.temperature = 1.0f, .seed = random.seed() + r};
    if (r % 2 == 0) requests[r].top_k = 2;
    if (r % 2 == 1) requests[r].top_p = 0.05f;
  }
  const Result result =
      RunSampler(logits, rows, vocab, vocab, requests, SamplingAlgorithm::kRadixSelect);
  std::map<int32_t, int> counts;
  for (int32_t t : result.tokens) {
    ASSERT_TRUE(tied.count(t)) << "token " << t;
    ++counts[t];
  }
  // Each of the four has probability 1/4 per draw: missing one in 4000 is (3/4)^4000 ~ 1e-500.
  EXPECT_EQ(counts.size(), 4u);
}

// ---- Distribution ------------------------------------------------------------------------------

// Chi-square critical values for alpha = 1e-6 (df = 1 ... 15), from the regularised upper
// incomplete gamma function: a correct sampler fails each case with probability 1e-6.
constexpr double kChiSquareCritical[] = {23.93, 27.63, 30.66, 33.38, 35.89, 38.26, 40.52, 42.70,
                                         44.81, 46.86, 48.87, 50.83, 52.75, 54.64, 56.49};

TEST(SamplingGpuTest, EmpiricalDistributionMatchesReference) {
  FF_SKIP_WITHOUT_GPU();
  testing::SeededRng random;
  const int64_t vocab = 16, draws = 20000;
  const std::vector<float> row = {2.0f, 1.5f,  1.2f,  1.0f,  0.8f,  0.5f,  0.3f,  0.1f,
                                  0.0f, -0.2f, -0.4f, -0.6f, -0.8f, -1.0f, -1.2f, -1.5f};
  struct Case {
    Request request;
    bool vary_step;  // one seed, steps 0 ... draws - 1; else seeds base + i at one step
  };
  const Case cases[] = {{{.temperature = 1.0f}, false},
                        {{.temperature = 0.7f, .top_k = 10}, true},
                        {{.temperature = 1.3f, .top_p = 0.8f}, false},
                        {{.temperature = 1.0f, .top_k = 12, .top_p = 0.9f}, true}};
  std::vector<float> logits;
  for (int64_t i = 0; i < draws; ++i) logits.insert(logits.end(), row.begin(), row.end());
  for (const Case& c : cases) {
    SCOPED_TRACE("T " + std::to_string(c.request.temperature) + " k " +
                 std::to_string(c.request.top_k) + " p " + std::to_string(c.request.top_p));
    const Candidates ref = ReferenceCandidates(row.data(), vocab, c.request, 0.0);
    // The cuts are far from the float margin: the widened set is the same.
    ASSERT_EQ(ref.ids.size(), ReferenceCandidates(row.data(), vocab, c.request, 1e-4).ids.size());
    std::vector<Request> requests(draws, c.request);
    const uint64_t base = random.rng()();
    for (int64_t i = 0; i < draws; ++i) {
      requests[i].seed = c.vary_step ? base : base + i;
      requests[i].step = c.vary_step ? i : 17;
    }
    const Result result = RunSampler(logits, draws, vocab, vocab, requests,
                                     SamplingAlgorithm::kRadixSelect, /*with_logprobs=*/false);
    std::vector<int64_t> counts(vocab, 0);
    for (int32_t t : result.tokens) {
      ASSERT_GE(t, 0);
      ASSERT_LT(t, vocab);
      ++counts[t];
    }
    double chi_square = 0.0;
    std::set<int32_t> candidates(ref.ids.begin(), ref.ids.end());
    for (size_t j = 0; j < ref.ids.size(); ++j) {
      const double expected = ref.probs[j] * draws;
      ASSERT_GE(expected, 5.0) << "too few expected draws for a chi-square cell";
      const double diff = counts[ref.ids[j]] - expected;
      chi_square += diff * diff / expected;
    }
    for (int32_t id = 0; id < vocab; ++id) {
      if (!candidates.count(id)) {
        EXPECT_EQ(counts[id], 0) << "drew excluded token " << id;
      }
    }
    const size_t df = ref.ids.size() - 1;
    ASSERT_GE(df, 1u);
    EXPECT_LT(chi_square, kChiSquareCritical[df - 1]) << "df " << df;
  }
}

// ---- Determinism -------------------------------------------------------------------------------

// A request's token depends on its logits, parameters, seed and step only: the same request in
// row 0 of one batch and row 7 of another (different neighbours, padded row stride) draws the
// same token, and a repeated launch repeats every token.
TEST(SamplingGpuTest, SameRequestSameTokenInAnyBatchPosition) {
  FF_SKIP_WITHOUT_GPU();
  testing::SeededRng random;
  const int64_t vocab = 32000, rows = 8, padded = vocab + 37;
  const Request probes[] = {{.temperature = 1.0f, .seed = random.rng()(), .step = 5},
                            {.temperature = 0.8f, .top_k = 40, .seed = random.rng()(), .step = 0},
                            {.temperature = 1.2f, .top_p = 0.9f, .seed = random.rng()(), .step = 9},
                            {.temperature = 0.0f}};
  for (const Request& probe : probes) {
    const std::vector<float> probe_logits = random.Gaussian(vocab, 2.0f);
    std::vector<float> batch_a = MixedLogits(random, rows, vocab);
    std::vector<Request> requests_a = MixedRequests(random, rows);
    std::copy(probe_logits.begin(), probe_logits.end(), batch_a.begin());
    requests_a[0] = probe;
    std::vector<float> batch_b(rows * padded, 0.5f);
    const std::vector<float> others = MixedLogits(random, rows, vocab);
    for (int64_t r = 0; r < rows; ++r) {
      const float* src = r == 7 ? probe_logits.data() : others.data() + r * vocab;
      std::copy(src, src + vocab, batch_b.begin() + r * padded);
    }
    std::vector<Request> requests_b = MixedRequests(random, rows);
    requests_b[7] = probe;
    const Result a =
        RunSampler(batch_a, rows, vocab, vocab, requests_a, SamplingAlgorithm::kRadixSelect);
    const Result a_again =
        RunSampler(batch_a, rows, vocab, vocab, requests_a, SamplingAlgorithm::kRadixSelect);
    const Result b =
        RunSampler(batch_b, rows, vocab, padded, requests_b, SamplingAlgorithm::kRadixSelect);
    EXPECT_EQ(a.tokens, a_again.tokens);
    EXPECT_EQ(a.tokens[0], b.tokens[7]);
    EXPECT_EQ(testing::FloatBits(a.logprobs[0]), testing::FloatBits(b.logprobs[7]));
  }
}

// The same row at every 16-byte misalignment (row starts at 0, 1, 2 and 3 floats past a 16-byte
// boundary: stride = vocab rounded up to 4, plus 1), with vocabularies that end in a partial quad
// or not: identical tokens and bit-identical logprobs, since every float reduction visits the
// row's elements in an order fixed by their indices alone. The logprob also matches the double
// reference within kLogprobTolerance.
TEST(SamplingGpuTest, LogprobsBitIdenticalAtEveryRowAlignment) {
  FF_SKIP_WITHOUT_GPU();
  testing::SeededRng random;
  for (const int64_t vocab : {int64_t{7}, int64_t{1001}, int64_t{32000}, int64_t{128256}}) {
    SCOPED_TRACE("vocab " + std::to_string(vocab));
    const int64_t rows = 8, stride = (vocab + 3) / 4 * 4 + 1;
    const Request probes[] = {
        {.temperature = 0.0f},
        {.temperature = 1.0f, .seed = random.rng()(), .step = 3},
        {.temperature = 0.7f, .top_k = 50, .seed = random.rng()(), .step = 11},
        {.temperature = 1.3f, .top_p = 0.8f, .seed = random.rng()(), .step = 2}};
    for (const Request& probe : probes) {
      const std::vector<float> row = random.Gaussian(vocab, 3.0f);
      std::vector<float> batch(rows * stride, 0.25f);
      for (int64_t r = 0; r < rows; ++r)
        std::copy(row.begin(), row.end(), batch.begin() + r * stride);
      const Result result =
          RunSampler(batch, rows, vocab, stride, std::vector<Request>(rows, probe),
                     SamplingAlgorithm::kRadixSelect);
      for (int64_t r = 1; r < rows; ++r) {
        SCOPED_TRACE("row " + std::to_string(r) + " (misaligned by " +
                     std::to_string(r * stride % 4) + " floats)");
        EXPECT_EQ(result.tokens[r], result.tokens[0]);
        EXPECT_EQ(testing::FloatBits(result.logprobs[r]), testing::FloatBits(result.logprobs[0]));
      }
      ASSERT_GE(result.tokens[0], 0);
      ASSERT_LT(result.tokens[0], vocab);
      EXPECT_NEAR(result.logprobs[0], LogSoftmax(row.data(), vocab, result.tokens[0]),
                  kLogprobTolerance);
    }
  }
}

TEST(SamplingGpuTest, RejectsBadArguments) {
  // Argument checks run before any device call: no GPU needed.
  float logits = 0.0f;
  int32_t token = 0;
  const DeviceSampling good{.logits = &logits, .rows = 1, .vocab = 1, .tokens = &token};
  auto bad = good;
  bad.vocab = 0;
  EXPECT_EQ(SampleTokens(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = good;
  bad.vocab = (int64_t{1} << 23) + 1;
  EXPECT_EQ(SampleTokens(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = good;
  bad.vocab = 4;
  bad.logits_row_stride = 3;
  EXPECT_EQ(SampleTokens(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = good;
  bad.tokens = nullptr;
  EXPECT_EQ(SampleTokens(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = good;
  bad.logits = nullptr;
  EXPECT_EQ(SampleTokens(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = good;
  bad.rows = 0;
  bad.logits = nullptr;
  EXPECT_TRUE(SampleTokens(bad, nullptr).ok()) << "rows = 0 is a no-op";
}

}  // namespace
}  // namespace flatfleet::cuda
