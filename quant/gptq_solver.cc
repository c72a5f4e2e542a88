#include "quant/gptq_solver.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_format.h"
#include "quant/blas_library.h"

namespace flatfleet::quant {
namespace {

absl::Status NotPositiveDefinite(std::string_view what, int64_t column) {
  return absl::FailedPreconditionError(
      absl::StrFormat("GPTQ: the %s is not positive definite at column %d (raise the dampening)",
                      std::string(what), column));
}

// In-place lower Cholesky factor of a symmetric positive definite [k, k] matrix (the upper
// triangle is zeroed).
absl::Status CholeskyLower(std::span<double> a, int64_t k, std::string_view what) {
  for (int64_t j = 0; j < k; ++j) {
    double diagonal = a[j * k + j];
    for (int64_t p = 0; p < j; ++p) diagonal -= a[j * k + p] * a[j * k + p];
    if (!(diagonal > 0.0) || !std::isfinite(diagonal)) return NotPositiveDefinite(what, j);
    const double pivot = std::sqrt(diagonal);
    a[j * k + j] = pivot;
    for (int64_t i = j + 1; i < k; ++i) {
      double sum = a[i * k + j];
      for (int64_t p = 0; p < j; ++p) sum -= a[i * k + p] * a[j * k + p];
      a[i * k + j] = sum / pivot;
    }
    for (int64_t i = 0; i < j; ++i) a[i * k + j] = 0.0;
  }
  return absl::OkStatus();
}

class ScalarSolver final : public GptqSolver {
 public:
  std::string_view name() const override { return "scalar"; }

  // Every step overwrites only entries no later step of it reads, so the arithmetic (and its
  // order) is that of the textbook version with separate L^-1 and H^-1 buffers, in h alone.
  absl::Status UpperCholeskyOfInverse(std::span<double> h, int64_t k) const override {
    absl::Status status = CholeskyLower(h, k, "Hessian");  // H = L L^T
    if (!status.ok()) return status;
    // L^-1 (lower) over L, column by column by forward substitution: entry (i, c) needs L's
    // columns c..i-1 of row i (not yet overwritten: this column is done top down, later columns
    // not at all) and L^-1's entries (c..i-1, c) (already written).
    for (int64_t c = 0; c < k; ++c) {
      h[c * k + c] = 1.0 / h[c * k + c];
      for (int64_t i = c + 1; i < k; ++i) {
        double sum = 0.0;
        for (int64_t p = c; p < i; ++p) sum += h[i * k + p] * h[p * k + c];
        h[i * k + c] = -sum / h[i * k + i];
      }
    }
    // H^-1 = L^-T L^-1 into the upper triangle (zero after the factorisation; L^-1 is lower):
    // entry (i, j), j <= i, reads L^-1's rows i.. only, and the diagonal (i, i) is written last
    // in its row, after the row's last read of L^-1 (i, i).
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j <= i; ++j) {
        double sum = 0.0;
        for (int64_t p = i; p < k; ++p) sum += h[p * k + i] * h[p * k + j];
        h[j * k + i] = sum;
      }
    }
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < i; ++j) h[i * k + j] = h[j * k + i];
    }
    status = CholeskyLower(h, k, "inverse Hessian");  // H^-1 = M M^T, U = M^T
    if (!status.ok()) return status;
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < i; ++j) std::swap(h[j * k + i], h[i * k + j]);
    }
    return absl::OkStatus();
  }

  void PropagateBlockErrors(std::span<const double> errors, int64_t rows, int64_t width,
                            std::span<const double> u, int64_t k, int64_t b1,
                            std::span<double> w) const override {
    const int64_t b2 = b1 + width;
    for (int64_t r = 0; r < rows; ++r) {
      double* row = w.data() + r * k;
      for (int64_t p = b1; p < b2; ++p) {
        const double error = errors[r * width + (p - b1)];
        if (error == 0.0) continue;
        const double* u_row = u.data() + p * k;
        for (int64_t j = b2; j < k; ++j) row[j] -= error * u_row[j];
      }
    }
  }
};

class BlasSolver final : public GptqSolver {
 public:
  explicit BlasSolver(const BlasLibrary& blas) : blas_(blas) {}
  std::string_view name() const override { return "openblas"; }

  // Row-major H is symmetric, so its column-major view is H itself and a row-major lower
  // triangle is a column-major upper one: dpotrf('U') leaves row-major L with H = L L^T, dpotri
  // turns it into H^-1 (row-major lower), dpotrf('L') of H^-1 leaves row-major upper U with
  // H^-1 = U^T U.
  absl::Status UpperCholeskyOfInverse(std::span<double> h, int64_t k) const override {
    const int n = static_cast<int>(k);
    int info = 0;
    blas_.dpotrf("U", &n, h.data(), &n, &info, 1);
    if (info != 0) return NotPositiveDefinite("Hessian", info > 0 ? info - 1 : -info);
    blas_.dpotri("U", &n, h.data(), &n, &info, 1);
    if (info != 0) return NotPositiveDefinite("Hessian", info > 0 ? info - 1 : -info);
    // potri filled the row-major lower triangle; the second factorisation reads the upper one.
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < i; ++j) h[j * k + i] = h[i * k + j];
    }
    blas_.dpotrf("L", &n, h.data(), &n, &info, 1);
    if (info != 0) return NotPositiveDefinite("inverse Hessian", info > 0 ? info - 1 : -info);
    return absl::OkStatus();
  }

  // GPTQ's O(rows * k^2) part, one dgemm per block.
  void PropagateBlockErrors(std::span<const double> errors, int64_t rows, int64_t width,
                            std::span<const double> u, int64_t k, int64_t b1,
                            std::span<double> w) const override {
    const int64_t b2 = b1 + width;
    if (b2 >= k) return;
    blas_.dgemm(BlasLibrary::kRowMajor, BlasLibrary::kNoTrans, BlasLibrary::kNoTrans,
                static_cast<int>(rows), static_cast<int>(k - b2), static_cast<int>(width), -1.0,
                errors.data(), static_cast<int>(width), u.data() + b1 * k + b2, static_cast<int>(k),
                1.0, w.data() + b2, static_cast<int>(k));
  }

 private:
  const BlasLibrary& blas_;
};

}  // namespace

const GptqSolver& ScalarGptqSolver() {
  static const ScalarSolver solver;
  return solver;
}

const GptqSolver* BlasGptqSolver() {
  static const GptqSolver* const solver = []() -> const GptqSolver* {
    const BlasLibrary* blas = LoadedBlasLibrary();
    return blas == nullptr ? nullptr : new BlasSolver(*blas);
  }();
  return solver;
}

const GptqSolver& DefaultGptqSolver() {
  const GptqSolver* blas = BlasGptqSolver();
  return blas != nullptr ? *blas : ScalarGptqSolver();
}

}  // namespace flatfleet::quant
