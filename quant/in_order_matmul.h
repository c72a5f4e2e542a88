// A double-precision matrix product whose every element is rounded exactly as the plain triple
// loop rounds it: c(i, j) = (((0 + a(i,0) b(0,j)) + a(i,1) b(1,j)) + ...), one multiply and one add
// per term (no FMA), terms in ascending k. Tiling, packing and the thread count only decide which
// thread computes which elements and when, never the order of an element's terms, so the result
// is bit-identical at any thread count and to the scalar loops FlatQuant's trainer had (whose
// Evaluate and chunked Loss must agree bit for bit).
#pragma once

#include <cstdint>

namespace flatfleet {
class ThreadPool;
}  // namespace flatfleet

namespace flatfleet::quant {

// A read-only matrix with arbitrary strides: element (r, c) is data[r * row_stride + c *
// col_stride], so transposes and row-major blocks are views, not copies.
struct MatrixView {
  const double* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;
  int64_t col_stride = 1;

  static MatrixView RowMajor(const double* data, int64_t rows, int64_t cols) {
    return {data, rows, cols, cols, 1};
  }
  MatrixView Transposed() const { return {data, cols, rows, col_stride, row_stride}; }
};

// c[i * ldc + j] = (a * b)(i, j) for i < a.rows, j < b.cols, in the order above (requires a.cols ==
// b.rows). Runs on `pool`'s threads; inside another ParallelFor it runs on the calling thread.
void InOrderMatMul(ThreadPool& pool, const MatrixView& a, const MatrixView& b, double* c,
                   int64_t ldc);

// The same on the calling thread, in the largest blocks: for callers that already run in parallel
// over many small products (one per row of a Kronecker transform).
void InOrderMatMulOnThisThread(const MatrixView& a, const MatrixView& b, double* c, int64_t ldc);

}  // namespace flatfleet::quant
