#include "kernels/cpu/quant/kronecker_transform.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/quant/dense_matrix.h"
#include "tests/quant/test_random.h"
#include "tests/quant/transform_test_util.h"

namespace flatfleet::quant {
namespace {

class KroneckerTransformTest : public test_util::RandomTest {
 protected:
  // The transform as an explicit matrix: row i is e_i transformed.
  static std::vector<double> Materialize(const KroneckerTransform& t, bool weights) {
    const int64_t n = t.size();
    std::vector<float> identity(n * n, 0.0f);
    for (int64_t i = 0; i < n; ++i) identity[i * n + i] = 1.0f;
    if (weights) {
      t.FoldIntoWeightRows(identity, n);
    } else {
      t.ApplyToActivationRows(identity, n);
    }
    return std::vector<double>(identity.begin(), identity.end());
  }
};

TEST(RandomOrthogonalTest, IsOrthogonalAndSeeded) {
  for (int64_t size : {1, 3, 7, 16, 43}) {
    const std::vector<double> q = RandomOrthogonal(size, 1234 + size);
    EXPECT_LE(test_util::MaxOrthogonalityError(q, size), 1e-12);
    EXPECT_EQ(q, RandomOrthogonal(size, 1234 + size));
  }
}

TEST_F(KroneckerTransformTest, OrthogonalFactorsGiveAnOrthogonalKroneckerProduct) {
  const int64_t n1 = UniformInt(2, 12), n2 = UniformInt(2, 12);
  const std::vector<double> p1 = RandomOrthogonal(n1, seed_), p2 = RandomOrthogonal(n2, seed_ + 1);
  auto t = KroneckerTransform::Create(p1, n1, p2, n2);
  ASSERT_TRUE(t.ok()) << t.status();
  const std::vector<double> q = Materialize(*t, /*weights=*/false);
  const int64_t n = n1 * n2;
  EXPECT_LE(test_util::MaxOrthogonalityError(q, n), 1e-5);
  // It is P1 (x) P2: entry ((i, j), (a, b)) = P1[i][a] * P2[j][b].
  for (int64_t i = 0; i < n1; ++i)
    for (int64_t j = 0; j < n2; ++j)
      for (int64_t a = 0; a < n1; ++a)
        for (int64_t b = 0; b < n2; ++b)
          ASSERT_NEAR(q[(i * n2 + j) * n + a * n2 + b], p1[i * n1 + a] * p2[j * n2 + b], 1e-6);
  // For orthogonal factors the weight fold is the same matrix.
  const std::vector<double> folded = Materialize(*t, /*weights=*/true);
  for (int64_t i = 0; i < n * n; ++i) ASSERT_NEAR(folded[i], q[i], 1e-6);
}

TEST_F(KroneckerTransformTest, LinearLayerIsUnchangedForInvertibleFactors) {
  const int64_t n1 = 8, n2 = 16, k = n1 * n2, m = 5, n = 7;
  // Well-conditioned but not orthogonal: I + 0.3 G / sqrt(size).
  auto invertible = [this](int64_t size) {
    std::vector<float> g = Gaussian(size * size, 0.3f / std::sqrt(static_cast<float>(size)));
    std::vector<double> p(g.begin(), g.end());
    for (int64_t i = 0; i < size; ++i) p[i * size + i] += 1.0;
    return p;
  };
  auto t = KroneckerTransform::Create(invertible(n1), n1, invertible(n2), n2);
  ASSERT_TRUE(t.ok()) << t.status();
  std::vector<float> x = Gaussian(m * k), w = Gaussian(n * k, 0.1f);
  const std::vector<double> before = test_util::MatMulTransposed(x, w, m, n, k);
  t->ApplyToActivationRows(x, m);
  t->FoldIntoWeightRows(w, n);
  const std::vector<double> after = test_util::MatMulTransposed(x, w, m, n, k);
  // Norms after the transform bound the float32 rounding of the transformed operands.
  const std::vector<double> scale = test_util::RowNormProducts(x, w, m, n, k);
  for (size_t i = 0; i < before.size(); ++i) ASSERT_NEAR(after[i], before[i], 1e-5 * scale[i]);
}

TEST(KroneckerTransformErrors, RejectsSingularOrMisshapenFactors) {
  EXPECT_FALSE(KroneckerTransform::Create({1, 2, 2, 4}, 2, {1}, 1).ok());
  EXPECT_FALSE(KroneckerTransform::Create({1, 0, 0}, 2, {1}, 1).ok());
}

}  // namespace
}  // namespace flatfleet::quant
