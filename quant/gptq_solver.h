// The dense linear algebra of GPTQ (gptq_quantizer.h) behind one interface, so that a backend
// (OpenBLAS on the CPU here, a GPU solver later) replaces exactly these two steps and the
// column-by-column rounding stays one shared piece of code:
//
//   UpperCholeskyOfInverse   H (damped, permuted) -> U with H^-1 = U^T U, in place
//   PropagateBlockErrors     W[:, b2:] -= E U[b1:b2, b2:] after each block of columns
//
// Both solvers do the same arithmetic in double with a different summation order; the codes they
// lead to are the same up to rounding ties (tests/quant/gptq_solver_test.cc states the rule).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace flatfleet::quant {

class GptqSolver {
 public:
  virtual ~GptqSolver() = default;
  virtual std::string_view name() const = 0;

  // `h` [k, k] row-major, full symmetric positive definite. On return its upper triangle (j >= i)
  // holds U; the lower triangle is unspecified. In place: no [k, k] buffer besides `h` (both
  // solvers; tests/quant/gptq_memory_test.cc counts). Errors (FailedPrecondition) when H or H^-1
  // is not positive definite.
  virtual absl::Status UpperCholeskyOfInverse(std::span<double> h, int64_t k) const = 0;

  // w [rows, k] row-major -= errors [rows, width] times the rows b1..b1+width of u, columns
  // b2..k (b2 = b1 + width).
  virtual void PropagateBlockErrors(std::span<const double> errors, int64_t rows, int64_t width,
                                    std::span<const double> u, int64_t k, int64_t b1,
                                    std::span<double> w) const = 0;
};

// Scalar double loops (no dependencies).
const GptqSolver& ScalarGptqSolver();
// OpenBLAS (blas_library.h), multithreaded; null when the library is not available.
const GptqSolver* BlasGptqSolver();
// What QuantizeGptq uses when GptqOptions::solver is null: OpenBLAS when it loads, else scalar.
const GptqSolver& DefaultGptqSolver();

}  // namespace flatfleet::quant
