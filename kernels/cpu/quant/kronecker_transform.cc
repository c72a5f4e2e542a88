#include "kernels/cpu/quant/kronecker_transform.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/thread_pool.h"
#include "kernels/cpu/quant/dense_matrix.h"

namespace flatfleet::quant {

absl::StatusOr<KroneckerTransform> KroneckerTransform::Create(std::vector<double> p1, int64_t n1,
                                                              std::vector<double> p2, int64_t n2) {
  if (n1 < 1 || n2 < 1 || static_cast<int64_t>(p1.size()) != n1 * n1 ||
      static_cast<int64_t>(p2.size()) != n2 * n2) {
    return absl::InvalidArgumentError(absl::StrCat("factors must be square: P1 has ", p1.size(),
                                                   " entries for n1 = ", n1, ", P2 has ", p2.size(),
                                                   " for n2 = ", n2));
  }
  auto p1_inverse = InvertMatrix(p1, n1);
  if (!p1_inverse.ok()) return absl::InvalidArgumentError("P1 is singular");
  auto p2_inverse = InvertMatrix(p2, n2);
  if (!p2_inverse.ok()) return absl::InvalidArgumentError("P2 is singular");
  KroneckerTransform out;
  out.n1_ = n1;
  out.n2_ = n2;
  out.p1_ = std::move(p1);
  out.p2_ = std::move(p2);
  out.p1_inverse_transpose_ = Transpose(*p1_inverse, n1);
  out.p2_inverse_transpose_ = Transpose(*p2_inverse, n2);
  return out;
}

void KroneckerTransform::ApplyFactors(std::span<float> rows, int64_t num_rows,
                                      const std::vector<double>& left,
                                      const std::vector<double>& right) const {
  const int64_t n = size();
  // Rows are independent, and each output element stays one sum of its terms in ascending order
  // with every product and sum rounded (this file is built without FMA contraction): the loops
  // below run over whole rows of the n1 x n2 view so that they vectorise, but the result is the
  // scalar definition's at any thread count and vector width (T[a][j] = sum_i left[i][a] Xr[i][j],
  // Out[a][b] = sum_j T[a][j] right[j][b], each sum starting from 0.0).
  ThreadPool::Default().ParallelFor(num_rows, [&](int64_t begin, int64_t end) {
    std::vector<double> x(n), left_applied(n), sums(n2_);
    for (int64_t r = begin; r < end; ++r) {
      float* row = rows.data() + r * n;
      for (int64_t i = 0; i < n; ++i) x[i] = row[i];
      for (int64_t a = 0; a < n1_; ++a) {
        double* t = left_applied.data() + a * n2_;
        std::fill(t, t + n2_, 0.0);
        for (int64_t i = 0; i < n1_; ++i) {
          const double l = left[i * n1_ + a];
          const double* xi = x.data() + i * n2_;
          for (int64_t j = 0; j < n2_; ++j) t[j] = t[j] + l * xi[j];
        }
      }
      for (int64_t a = 0; a < n1_; ++a) {
        const double* t = left_applied.data() + a * n2_;
        std::fill(sums.begin(), sums.end(), 0.0);
        for (int64_t j = 0; j < n2_; ++j) {
          const double tj = t[j];
          const double* rj = right.data() + j * n2_;
          for (int64_t b = 0; b < n2_; ++b) sums[b] = sums[b] + tj * rj[b];
        }
        for (int64_t b = 0; b < n2_; ++b) row[a * n2_ + b] = static_cast<float>(sums[b]);
      }
    }
  });
}

void KroneckerTransform::ApplyToActivationRows(std::span<float> rows, int64_t num_rows) const {
  ApplyFactors(rows, num_rows, p1_, p2_);
}

void KroneckerTransform::FoldIntoWeightRows(std::span<float> rows, int64_t num_rows) const {
  ApplyFactors(rows, num_rows, p1_inverse_transpose_, p2_inverse_transpose_);
}

int64_t KroneckerLeftFactor(int64_t n) {
  int64_t best = 1;
  for (int64_t d = 1; d * d <= n; ++d) {
    if (n % d == 0) best = d;
  }
  return best;
}

}  // namespace flatfleet::quant
