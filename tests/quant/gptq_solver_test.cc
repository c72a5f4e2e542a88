// GPTQ's two solvers (quant/gptq_solver.h) and Gram accumulation (quant/gram_accumulation.h):
// the scalar solver reproduces the reference scalar GPTQ (tests/quant/gptq_scalar_reference.h) bit
// for bit; the OpenBLAS one (loaded at first use) gives the same codes up to ties.
//
// Tie rule (OpenBLAS against the reference): both paths run the same algorithm in double with a
// different summation order, so their working values differ by ~1e-12 relative. A code can then
// differ only where the old path's pre-rounding value (value / scale, in code units) lies within
// kTieEpsilon of a rounding boundary (a half-integer; clamping bounds are half-integers too).
// GPTQ's error feedback is per row, so after such a tie the rest of that row legitimately diverges;
// the test checks every row up to its first difference and bounds the number of tie rows.
#include "quant/gptq_solver.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "quant/blas_library.h"
#include "quant/gptq_quantizer.h"
#include "quant/gram_accumulation.h"
#include "tests/quant/gptq_scalar_reference.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

// float(w) may move by one ulp (6e-8 relative) between the paths; value / scale is at most
// ~2^(bits-1) + 1 code units, so a flip needs the value within ~1e-6 of a half-integer.
constexpr double kTieEpsilon = 1e-5;

class GptqSolverTest : public test_util::RandomTest {
 protected:
  void SetUp() override {
    if (BlasGptqSolver() == nullptr) GTEST_SKIP() << "OpenBLAS not loadable here";
  }
};

std::vector<double> ScalarGram(const std::vector<float>& x, int64_t samples, int64_t cols) {
  std::vector<double> h(cols * cols, 0.0);
  for (int64_t s = 0; s < samples; ++s)
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = 0; j < cols; ++j)
        h[i * cols + j] += double{x[s * cols + i]} * x[s * cols + j];
  return h;
}

TEST_F(GptqSolverTest, GramMatchesTheScalarSumAndIsSymmetric) {
  // Row counts below, at and above the 256-row widening block; accumulated over two calls. Widths
  // below, at and across the mirror's 64-wide tiles (257: five tiles, the last one column).
  for (auto [samples, cols] :
       {std::pair<int64_t, int64_t>{1, 1}, {7, 13}, {256, 64}, {600, 130}, {5, 257}}) {
    SCOPED_TRACE(testing::Message() << samples << " x " << cols);
    const std::vector<float> x = Gaussian(samples * cols);
    const std::vector<double> expected = ScalarGram(x, samples, cols);
    std::vector<double> gram(cols * cols, 0.0), scalar(cols * cols, 0.0);
    const int64_t first = samples / 2;
    AccumulateGram(std::span(x).first(first * cols), first, cols, gram);
    AccumulateGram(std::span(x).subspan(first * cols), samples - first, cols, gram);
    AccumulateGram(std::span(x).first(first * cols), first, cols, scalar, /*use_blas=*/false);
    AccumulateGram(std::span(x).subspan(first * cols), samples - first, cols, scalar, false);
    // The scalar fallback is the plain double sum in row order, exactly.
    ASSERT_EQ(scalar, expected);
    for (int64_t i = 0; i < cols; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        ASSERT_EQ(gram[i * cols + j], gram[j * cols + i]) << i << "," << j;
        // |error| <= samples * eps * sum |x_i x_j| <= samples * eps * sqrt(H_ii H_jj).
        const double bound =
            2.0 * samples * 1.2e-16 * std::sqrt(expected[i * cols + i] * expected[j * cols + j]);
        ASSERT_NEAR(gram[i * cols + j], expected[i * cols + j], bound) << i << "," << j;
      }
    }
  }
}

struct Shape {
  int64_t rows, cols, group;
  int bits;
  bool symmetric, act_order;
};

TEST_F(GptqSolverTest, SameCodesAsTheScalarPathUpToTies) {
  const Shape shapes[] = {{16, 64, 0, 4, true, false},
                          {32, 256, 128, 4, true, false},
                          {24, 384, 128, 4, false, true},
                          {8, 200, 0, 3, false, false},
                          {12, 320, 64, 3, true, true}};
  int64_t rows_total = 0, tie_rows = 0, codes_compared = 0;
  for (const Shape& shape : shapes) {
    SCOPED_TRACE(testing::Message() << shape.rows << "x" << shape.cols << " group " << shape.group
                                    << " bits " << shape.bits << " act_order " << shape.act_order);
    const int64_t rows = shape.rows, cols = shape.cols, samples = 2 * cols;
    // Correlated inputs (a shared component and a loud channel) and one dead input.
    std::vector<float> x = Gaussian(samples * cols);
    const std::vector<float> shared = Gaussian(samples);
    for (int64_t s = 0; s < samples; ++s) {
      for (int64_t i = 0; i < cols; ++i) x[s * cols + i] += 0.8f * shared[s];
      x[s * cols + 1] *= 5.0f;
      x[s * cols + cols - 1] = 0.0f;
    }
    std::vector<double> h(cols * cols, 0.0);
    AccumulateGram(x, samples, cols, h);
    const std::vector<float> w = Gaussian(rows * cols);
    const QuantFormat format{
        .bits = shape.bits, .symmetric = shape.symmetric, .group_size = shape.group};
    GptqOptions options;
    options.act_order = shape.act_order;
    options.block_size = 32;
    std::vector<float> pre_rounding;
    auto old_path = reference::ScalarGptq(w, rows, cols, h, format, options, pre_rounding);
    ASSERT_TRUE(old_path.ok()) << old_path.status();
    options.solver = &ScalarGptqSolver();
    auto scalar_path = QuantizeGptq(w, rows, cols, h, format, options);
    ASSERT_TRUE(scalar_path.ok()) << scalar_path.status();
    // The scalar solver is the reference's arithmetic in the same order: identical output.
    ASSERT_EQ(scalar_path->codes, old_path->codes);
    ASSERT_EQ(scalar_path->scales, old_path->scales);
    ASSERT_EQ(scalar_path->zero_points, old_path->zero_points);
    options.solver = BlasGptqSolver();
    auto new_path = QuantizeGptq(w, rows, cols, h, format, options);
    ASSERT_TRUE(new_path.ok()) << new_path.status();

    // Visiting order as both paths form it (dead input's H_ii := 1, then damping).
    std::vector<double> diagonal(cols);
    for (int64_t i = 0; i < cols; ++i) diagonal[i] = h[i * cols + i] <= 0.0 ? 1.0 : h[i * cols + i];
    std::vector<int64_t> order(cols);
    std::iota(order.begin(), order.end(), 0);
    if (shape.act_order) {
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return diagonal[a] > diagonal[b]; });
    }
    const int64_t groups = shape.group == 0 ? 1 : cols / shape.group;
    const int64_t group_size = cols / groups;
    for (int64_t r = 0; r < rows; ++r) {
      ++rows_total;
      for (int64_t p = 0; p < cols; ++p) {
        const int64_t col = order[p];
        const int64_t g = col / group_size;
        // A group's parameters come from values formed before its columns: equal until a tie.
        ASSERT_EQ(old_path->scales[r * groups + g], new_path->scales[r * groups + g])
            << "row " << r << " group " << g << " before any tie";
        if (!shape.symmetric) {
          ASSERT_EQ(old_path->zero_points[r * groups + g], new_path->zero_points[r * groups + g]);
        }
        ++codes_compared;
        if (old_path->codes[r * cols + col] == new_path->codes[r * cols + col]) continue;
        const double value = pre_rounding[r * cols + col];
        const double to_boundary = std::fabs(value - std::floor(value) - 0.5);
        EXPECT_LE(to_boundary, kTieEpsilon)
            << "row " << r << " column " << col << ": codes "
            << int{old_path->codes[r * cols + col]} << " vs "
            << int{new_path->codes[r * cols + col]} << " at " << value;
        ++tie_rows;
        break;  // the row's later columns carry the different error
      }
    }
  }
  std::printf("GPTQ OpenBLAS vs scalar: %lld codes compared, %lld of %lld rows end at a tie\n",
              static_cast<long long>(codes_compared), static_cast<long long>(tie_rows),
              static_cast<long long>(rows_total));
  // Observed 0 tie rows; a tie is a ~1e-5-wide window per code, so more than 1% of rows is a bug.
  EXPECT_LE(tie_rows, rows_total / 100);
}

TEST_F(GptqSolverTest, SingularHessianIsAnErrorNotAnAbort) {
  const int64_t cols = 8;
  std::vector<double> h(cols * cols, 1.0);  // rank 1, all diagonal entries positive
  const std::vector<float> w = Gaussian(2 * cols);
  for (const GptqSolver* solver : {&ScalarGptqSolver(), BlasGptqSolver()}) {
    SCOPED_TRACE(std::string(solver->name()));
    GptqOptions options;
    options.damp = 0.0;
    options.solver = solver;
    auto result = QuantizeGptq(w, 2, cols, h, QuantFormat{.bits = 4}, options);
    ASSERT_FALSE(result.ok());
    EXPECT_NE(result.status().message().find("not positive definite"), std::string::npos);
  }
}

// FLATFLEET_BLAS_LIBRARY=none (ctest runs this test once more with it set) forces the scalar
// solver; otherwise the library loads here (CI installs libopenblas0).
TEST(GptqDefaultSolverTest, FollowsTheEnvironment) {
  const char* configured = std::getenv("FLATFLEET_BLAS_LIBRARY");
  if (configured != nullptr && std::string(configured) == "none") {
    EXPECT_EQ(LoadedBlasLibrary(), nullptr);
    EXPECT_EQ(DefaultGptqSolver().name(), "scalar");
  } else {
    ASSERT_NE(LoadedBlasLibrary(), nullptr) << "libopenblas.so.0 did not load";
    EXPECT_EQ(DefaultGptqSolver().name(), "openblas");
  }
  // Either way GPTQ runs (tiny identity-like Hessian: equals RTN's codes, no error feedback).
  const int64_t cols = 16;
  std::vector<double> h(cols * cols, 0.0);
  for (int64_t i = 0; i < cols; ++i) h[i * cols + i] = 1.0 + i;
  std::vector<float> w(4 * cols);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.1f * static_cast<float>(i % 7) - 0.3f;
  auto result = QuantizeGptq(w, 4, cols, h, QuantFormat{.bits = 4});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->codes.size(), w.size());
}

}  // namespace
}  // namespace flatfleet::quant
