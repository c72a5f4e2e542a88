#include "quant/in_order_matmul.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/thread_pool.h"

namespace flatfleet::quant {
namespace {

// GCC/Clang vector extensions: four doubles, one AVX2 register. With -ffp-contract=off (this
// file's compile option) `acc + a * b` stays a multiply and an add, as in the scalar loop.
using Vec4 = double __attribute__((vector_size(32)));

Vec4 Load(const double* p) {
  Vec4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

void Store(double* p, Vec4 v) { std::memcpy(p, &v, sizeof v); }

// A register tile of 4 x 8 outputs; A and B are packed per depth block (below).
constexpr int64_t kTileRows = 4;
constexpr int64_t kTileCols = 8;
constexpr int64_t kTileSize = kTileRows * kTileCols;
// Depth per pass: a packed B panel (256 x 8 doubles, 16 KiB) and A tile (8 KiB) stay in L1.
constexpr int64_t kDepthBlock = 256;
// The largest block of outputs one unit of work computes.
constexpr int64_t kMaxBlockRows = 64;
constexpr int64_t kMaxBlockCols = 64;

// acc (4 x 8, row-major) += packed A tile (depth x 4) times packed B panel (depth x 8), term by
// term in ascending depth.
void MicroKernel(const double* ap, const double* bp, int64_t depth, double* acc) {
  Vec4 c00 = Load(acc + 0), c01 = Load(acc + 4), c10 = Load(acc + 8), c11 = Load(acc + 12);
  Vec4 c20 = Load(acc + 16), c21 = Load(acc + 20), c30 = Load(acc + 24), c31 = Load(acc + 28);
  for (int64_t k = 0; k < depth; ++k) {
    const Vec4 b0 = Load(bp + k * kTileCols), b1 = Load(bp + k * kTileCols + 4);
    const double* a = ap + k * kTileRows;
    c00 = c00 + b0 * a[0];
    c01 = c01 + b1 * a[0];
    c10 = c10 + b0 * a[1];
    c11 = c11 + b1 * a[1];
    c20 = c20 + b0 * a[2];
    c21 = c21 + b1 * a[2];
    c30 = c30 + b0 * a[3];
    c31 = c31 + b1 * a[3];
  }
  Store(acc + 0, c00);
  Store(acc + 4, c01);
  Store(acc + 8, c10);
  Store(acc + 12, c11);
  Store(acc + 16, c20);
  Store(acc + 20, c21);
  Store(acc + 24, c30);
  Store(acc + 28, c31);
}

// Copies a(r0 .. r0 + width, k0 .. k0 + depth) as depth rows of `width` values (zero past the
// matrix's last row), the layout MicroKernel reads; B panels are packed from b's transpose.
void Pack(const MatrixView& m, int64_t r0, int64_t width, int64_t k0, int64_t depth, double* out) {
  const int64_t valid = std::min(width, m.rows - r0);
  for (int64_t k = 0; k < depth; ++k) {
    const double* column = m.data + (k0 + k) * m.col_stride + r0 * m.row_stride;
    double* o = out + k * width;
    for (int64_t r = 0; r < valid; ++r) o[r] = column[r * m.row_stride];
    for (int64_t r = valid; r < width; ++r) o[r] = 0.0;
  }
}

// c over rows [r0, r1) and columns [c0, c1), every element over the whole depth.
void MultiplyBlock(const MatrixView& a, const MatrixView& b, double* c, int64_t ldc, int64_t r0,
                   int64_t r1, int64_t c0, int64_t c1) {
  const int64_t tiles = (r1 - r0 + kTileRows - 1) / kTileRows;
  const int64_t panels = (c1 - c0 + kTileCols - 1) / kTileCols;
  const int64_t depth = a.cols;
  const MatrixView bt = b.Transposed();
  // Per thread, reused across calls (the trainer calls this per row of a Kronecker transform).
  thread_local std::vector<double> packed_a, packed_b, acc;
  packed_a.resize(tiles * kTileRows * kDepthBlock);
  packed_b.resize(panels * kTileCols * kDepthBlock);
  acc.assign(tiles * panels * kTileSize, 0.0);
  for (int64_t k0 = 0; k0 < depth; k0 += kDepthBlock) {
    const int64_t kd = std::min(kDepthBlock, depth - k0);
    for (int64_t t = 0; t < tiles; ++t) {
      Pack(a, r0 + t * kTileRows, kTileRows, k0, kd, packed_a.data() + t * kTileRows * kd);
    }
    for (int64_t p = 0; p < panels; ++p) {
      Pack(bt, c0 + p * kTileCols, kTileCols, k0, kd, packed_b.data() + p * kTileCols * kd);
    }
    for (int64_t p = 0; p < panels; ++p) {
      for (int64_t t = 0; t < tiles; ++t) {
        MicroKernel(packed_a.data() + t * kTileRows * kd, packed_b.data() + p * kTileCols * kd, kd,
                    acc.data() + (t * panels + p) * kTileSize);
      }
    }
  }
  for (int64_t i = r0; i < r1; ++i) {
    const int64_t t = (i - r0) / kTileRows, r = (i - r0) % kTileRows;
    for (int64_t j = c0; j < c1; ++j) {
      const int64_t p = (j - c0) / kTileCols, q = (j - c0) % kTileCols;
      c[i * ldc + j] = acc[(t * panels + p) * kTileSize + r * kTileCols + q];
    }
  }
}

}  // namespace

void InOrderMatMulOnThisThread(const MatrixView& a, const MatrixView& b, double* c, int64_t ldc) {
  for (int64_t r0 = 0; r0 < a.rows; r0 += kMaxBlockRows) {
    for (int64_t c0 = 0; c0 < b.cols; c0 += kMaxBlockCols) {
      MultiplyBlock(a, b, c, ldc, r0, std::min(a.rows, r0 + kMaxBlockRows), c0,
                    std::min(b.cols, c0 + kMaxBlockCols));
    }
  }
}

void InOrderMatMul(ThreadPool& pool, const MatrixView& a, const MatrixView& b, double* c,
                   int64_t ldc) {
  const int64_t rows = a.rows, cols = b.cols;
  if (rows <= 0 || cols <= 0) return;
  // Smaller blocks until every thread has a few (packing costs ~1/block_rows + 1/block_cols of
  // the multiply-adds, so not smaller than needed). Blocks never split the depth: they cannot
  // change any element's rounding.
  int64_t block_rows = kMaxBlockRows, block_cols = kMaxBlockCols;
  auto blocks = [&] {
    return ((rows + block_rows - 1) / block_rows) * ((cols + block_cols - 1) / block_cols);
  };
  while (blocks() < 4 * pool.num_threads() && (block_rows > kTileRows || block_cols > kTileCols)) {
    if (block_cols >= block_rows && block_cols > kTileCols) {
      block_cols /= 2;
    } else if (block_rows > kTileRows) {
      block_rows /= 2;
    } else {
      block_cols /= 2;
    }
  }
  const int64_t column_blocks = (cols + block_cols - 1) / block_cols;
  pool.ParallelFor(blocks(), [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t r0 = (u / column_blocks) * block_rows, c0 = (u % column_blocks) * block_cols;
      MultiplyBlock(a, b, c, ldc, r0, std::min(rows, r0 + block_rows), c0,
                    std::min(cols, c0 + block_cols));
    }
  });
}

}  // namespace flatfleet::quant
