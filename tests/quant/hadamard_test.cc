#include "kernels/cpu/quant/hadamard.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "tests/quant/test_random.h"
#include "tests/quant/transform_test_util.h"

namespace flatfleet::quant {
namespace {

class HadamardTest : public test_util::RandomTest {};

TEST_F(HadamardTest, FastTransformEqualsTheSylvesterMatrix) {
  const int64_t n = 32;
  const std::vector<float> x = Gaussian(n);
  std::vector<double> fast(x.begin(), x.end());
  FastWalshHadamard(fast.data(), n, 1);
  for (int64_t j = 0; j < n; ++j) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += x[i] * (__builtin_popcountll(i & j) % 2 ? -1.0 : 1.0);
    EXPECT_NEAR(fast[j], sum, 1e-9);
  }
}

TEST(PaleyHadamardTest, RowsAreOrthogonal) {
  for (int64_t order : {4, 8, 12, 20, 24, 44}) {
    auto h = PaleyHadamard(order);
    ASSERT_TRUE(h.ok()) << order;
    for (int64_t i = 0; i < order; ++i) {
      for (int64_t j = 0; j < order; ++j) {
        int64_t dot = 0;
        for (int64_t c = 0; c < order; ++c) dot += (*h)[i * order + c] * (*h)[j * order + c];
        ASSERT_EQ(dot, i == j ? order : 0) << order;
      }
    }
  }
  EXPECT_FALSE(PaleyHadamard(28).ok());  // 27 is not prime
  EXPECT_FALSE(PaleyHadamard(14).ok());  // 13 = 1 mod 4
}

TEST_F(HadamardTest, IsOrthogonalForPowerOfTwoAndOtherSizes) {
  struct Case {
    int64_t size, block;
    bool paley;
  };
  for (const Case& c : {Case{1, 1, false}, Case{64, 1, false}, Case{256, 1, false},
                        Case{96, 12, true}, Case{80, 20, true}, Case{56, 7, false},
                        Case{172, 43, false}, Case{3, 3, false}, Case{48, 12, true}}) {
    SCOPED_TRACE(::testing::Message() << "size " << c.size);
    auto q = RandomizedHadamard::Create(c.size, seed_);
    ASSERT_TRUE(q.ok()) << q.status();
    EXPECT_EQ(q->block_size(), c.block);
    EXPECT_EQ(q->block_is_paley(), c.paley);
    const std::vector<double> matrix = q->Materialize();
    EXPECT_LE(test_util::MaxOrthogonalityError(matrix, c.size), 1e-5);
    // The row application is the product with the materialised matrix.
    const int64_t rows = 3;
    std::vector<float> x = Gaussian(rows * c.size);
    const std::vector<float> original = x;
    q->ApplyToActivationRows(x, rows);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < c.size; ++j) {
        double expected = 0.0;
        for (int64_t i = 0; i < c.size; ++i)
          expected += original[r * c.size + i] * matrix[i * c.size + j];
        ASSERT_NEAR(x[r * c.size + j], expected, 1e-5);
      }
    }
  }
}

TEST_F(HadamardTest, LinearLayerIsUnchangedWhenFoldedIntoWeights) {
  for (int64_t size : {128, 96, 56}) {
    auto q = RandomizedHadamard::Create(size, seed_ + size);
    ASSERT_TRUE(q.ok());
    const int64_t m = 6, n = 10;
    std::vector<float> x = Gaussian(m * size), w = Gaussian(n * size, 0.1f);
    const std::vector<double> before = test_util::MatMulTransposed(x, w, m, n, size);
    q->ApplyToActivationRows(x, m);
    q->FoldIntoWeightRows(w, n);
    const std::vector<double> after = test_util::MatMulTransposed(x, w, m, n, size);
    const std::vector<double> scale = test_util::RowNormProducts(x, w, m, n, size);
    for (size_t i = 0; i < before.size(); ++i) ASSERT_NEAR(after[i], before[i], 1e-5 * scale[i]);
  }
}

TEST_F(HadamardTest, SpreadsAnOutlierChannel) {
  const int64_t size = 256, rows = 16;
  std::vector<float> x = Gaussian(rows * size);
  const int64_t outlier = UniformInt(0, size - 1);
  for (int64_t r = 0; r < rows; ++r) x[r * size + outlier] = 100.0f * (r % 2 ? 1 : -1);
  const double before = test_util::MeanMaxAbsOverRms(x, rows, size);
  auto q = RandomizedHadamard::Create(size, seed_);
  ASSERT_TRUE(q.ok());
  q->ApplyToActivationRows(x, rows);
  const double after = test_util::MeanMaxAbsOverRms(x, rows, size);
  EXPECT_GT(before, 10.0);
  EXPECT_LT(after, before / 3);
}

TEST(RandomizedHadamardErrors, RefusesLargeOddFactorsAndEmptySizes) {
  EXPECT_FALSE(RandomizedHadamard::Create(2 * 1031, 0).ok());
  EXPECT_FALSE(RandomizedHadamard::Create(0, 0).ok());
}

TEST_F(HadamardTest, SameSeedSameRotationOtherSeedOther) {
  auto a = RandomizedHadamard::Create(56, seed_), b = RandomizedHadamard::Create(56, seed_),
       c = RandomizedHadamard::Create(56, seed_ + 1);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->Materialize(), b->Materialize());
  EXPECT_NE(a->Materialize(), c->Materialize());
}

}  // namespace
}  // namespace flatfleet::quant
