#include "kernels/cpu/quant/kronecker_transform.h"

#include <cmath>
#include <cstring>
#include <utility>
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

// The scalar definition the header states (and the GPU kernel reproduces): each output one sum in
// ascending order from 0.0, every product rounded to double before it is added (volatile keeps
// this file's compiler from contracting it into an FMA). The vectorised, multithreaded transform
// must equal it bit for bit, on both sides.
std::vector<float> ScalarDefinition(std::vector<float> rows, int64_t num_rows, int64_t n1,
                                    int64_t n2, const std::vector<double>& left,
                                    const std::vector<double>& right) {
  const int64_t n = n1 * n2;
  std::vector<double> t(n);
  for (int64_t r = 0; r < num_rows; ++r) {
    float* x = rows.data() + r * n;
    for (int64_t a = 0; a < n1; ++a) {
      for (int64_t j = 0; j < n2; ++j) {
        double sum = 0.0;
        for (int64_t i = 0; i < n1; ++i) {
          volatile double product = left[i * n1 + a] * double{x[i * n2 + j]};
          sum = sum + product;
        }
        t[a * n2 + j] = sum;
      }
    }
    for (int64_t a = 0; a < n1; ++a) {
      for (int64_t b = 0; b < n2; ++b) {
        double sum = 0.0;
        for (int64_t j = 0; j < n2; ++j) {
          volatile double product = t[a * n2 + j] * right[j * n2 + b];
          sum = sum + product;
        }
        x[a * n2 + b] = static_cast<float>(sum);
      }
    }
  }
  return rows;
}

TEST_F(KroneckerTransformTest, EqualsTheScalarDefinitionBitForBit) {
  for (auto [n1, n2] : {std::pair<int64_t, int64_t>{4, 43}, {16, 43}, {1, 7}, {8, 8}, {7, 13}}) {
    SCOPED_TRACE(::testing::Message() << n1 << " x " << n2);
    auto random_factor = [&](int64_t order) {
      std::vector<double> f(order * order);
      const std::vector<float> g = Gaussian(order * order, 0.2f);
      for (int64_t i = 0; i < order * order; ++i) f[i] = (i % (order + 1) == 0 ? 1.0 : 0.0) + g[i];
      return f;
    };
    const std::vector<double> p1 = random_factor(n1), p2 = random_factor(n2);
    auto t = KroneckerTransform::Create(p1, n1, p2, n2);
    ASSERT_TRUE(t.ok()) << t.status();
    const int64_t rows = UniformInt(1, 37), n = n1 * n2;
    const std::vector<float> x = Gaussian(rows * n);
    std::vector<float> activations = x, weights = x;
    t->ApplyToActivationRows(activations, rows);
    t->FoldIntoWeightRows(weights, rows);
    const std::vector<float> want_activations = ScalarDefinition(x, rows, n1, n2, p1, p2);
    const std::vector<float> want_weights =
        ScalarDefinition(x, rows, n1, n2, Transpose(*InvertMatrix(p1, n1), n1),
                         Transpose(*InvertMatrix(p2, n2), n2));
    ASSERT_EQ(std::memcmp(activations.data(), want_activations.data(), rows * n * 4), 0);
    ASSERT_EQ(std::memcmp(weights.data(), want_weights.data(), rows * n * 4), 0);
  }
}

TEST(KroneckerTransformErrors, RejectsSingularOrMisshapenFactors) {
  EXPECT_FALSE(KroneckerTransform::Create({1, 2, 2, 4}, 2, {1}, 1).ok());
  EXPECT_FALSE(KroneckerTransform::Create({1, 0, 0}, 2, {1}, 1).ok());
}

}  // namespace
}  // namespace flatfleet::quant
