#include "kernels/cpu/gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/dtype.h"
#include "common/thread_pool.h"

namespace flatfleet::kernels::cpu {
namespace {

constexpr int64_t kNr = PackedMatrix::kPanelWidth;
// Rows of x per micro-kernel call: 4 x 16 accumulators take 8 of the 16 AVX2 registers,
// leaving room for the two panel vectors and four broadcasts without spilling.
constexpr int64_t kMr = 4;
// Reduction block: a panel slice (kKc * 16 floats = 32 KiB) stays in L1/L2 while every row
// block of x passes over it.
constexpr int64_t kKc = 512;

// acc[MR][16] over one reduction block, added to (or stored into) y. std::fma keeps the
// rounding defined and lets the compiler emit vfmadd; the unroll pragmas let it keep the
// accumulators in registers (two 8-wide vectors per row).
template <int MR>
void MicroKernel(const float* __restrict x, int64_t ldx, const float* __restrict panel, int64_t kc,
                 float* __restrict y, int64_t ldy, int64_t width, bool accumulate) {
  float acc[MR][kNr] = {};
  for (int64_t p = 0; p < kc; ++p) {
    const float* w = panel + p * kNr;
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const float xv = x[i * ldx + p];
#pragma GCC unroll 16
      for (int j = 0; j < kNr; ++j) acc[i][j] = std::fma(xv, w[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    float* out = y + i * ldy;
    if (accumulate) {
      for (int64_t j = 0; j < width; ++j) out[j] += acc[i][j];
    } else {
      for (int64_t j = 0; j < width; ++j) out[j] = acc[i][j];
    }
  }
}

// A single row (decode): two interleaved accumulator sets hide the FMA latency.
void RowKernel(const float* __restrict x, const float* __restrict panel, int64_t kc,
               float* __restrict y, int64_t width, bool accumulate) {
  float acc0[kNr] = {};
  float acc1[kNr] = {};
  int64_t p = 0;
  for (; p + 1 < kc; p += 2) {
    const float* w0 = panel + p * kNr;
    const float* w1 = w0 + kNr;
    const float x0 = x[p];
    const float x1 = x[p + 1];
#pragma GCC unroll 16
    for (int j = 0; j < kNr; ++j) acc0[j] = std::fma(x0, w0[j], acc0[j]);
#pragma GCC unroll 16
    for (int j = 0; j < kNr; ++j) acc1[j] = std::fma(x1, w1[j], acc1[j]);
  }
  if (p < kc) {
    const float* w0 = panel + p * kNr;
    for (int j = 0; j < kNr; ++j) acc0[j] = std::fma(x[p], w0[j], acc0[j]);
  }
  if (accumulate) {
    for (int64_t j = 0; j < width; ++j) y[j] += acc0[j] + acc1[j];
  } else {
    for (int64_t j = 0; j < width; ++j) y[j] = acc0[j] + acc1[j];
  }
}

void RunRows(const float* x, int64_t rows, int64_t ldx, const float* panel, int64_t kc, float* y,
             int64_t ldy, int64_t width, bool accumulate) {
  switch (rows) {
    case 1:
      return RowKernel(x, panel, kc, y, width, accumulate);
    case 2:
      return MicroKernel<2>(x, ldx, panel, kc, y, ldy, width, accumulate);
    case 3:
      return MicroKernel<3>(x, ldx, panel, kc, y, ldy, width, accumulate);
    default:
      return MicroKernel<4>(x, ldx, panel, kc, y, ldy, width, accumulate);
  }
}

// Columns [panel_begin, panel_end) x rows [row_begin, row_end) of y.
void GemmTile(const float* x, const PackedMatrix& w, float* y, int64_t row_begin, int64_t row_end,
              int64_t panel_begin, int64_t panel_end) {
  const int64_t k = w.k();
  const int64_t n = w.n();
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    const int64_t col = panel * kNr;
    const int64_t width = std::min(kNr, n - col);
    const float* packed = w.panel(panel);
    for (int64_t k0 = 0; k0 < k; k0 += kKc) {
      const int64_t kc = std::min(kKc, k - k0);
      for (int64_t r = row_begin; r < row_end; r += kMr) {
        const int64_t rows = std::min(kMr, row_end - r);
        RunRows(x + r * k + k0, rows, k, packed + k0 * kNr, kc, y + r * n + col, n, width,
                /*accumulate=*/k0 > 0);
      }
    }
    if (const float* bias = w.bias()) {
      for (int64_t r = row_begin; r < row_end; ++r) {
        for (int64_t j = 0; j < width; ++j) y[r * n + col + j] += bias[col + j];
      }
    }
  }
}

}  // namespace

template <typename Value>
void PackedMatrix::Pack(const Value& value) {
  const int64_t n = n_, k = k_;
  // Panels in parallel (each is written by one thread, padding lanes past n included: the
  // buffer starts uninitialised): every prepared linear is packed once.
  ThreadPool::Default().ParallelFor(
      num_panels(),
      [&](int64_t begin, int64_t end) {
        for (int64_t row = begin * kPanelWidth; row < end * kPanelWidth; ++row) {
          float* panel = data_.data() + (row / kPanelWidth) * k * kPanelWidth;
          const int64_t lane = row % kPanelWidth;
          if (row < n) {
            for (int64_t i = 0; i < k; ++i) panel[i * kPanelWidth + lane] = value(row, i);
          } else {
            for (int64_t i = 0; i < k; ++i) panel[i * kPanelWidth + lane] = 0.0f;
          }
        }
      },
      std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, k * kPanelWidth)));
}

PackedMatrix::PackedMatrix(const float* w, int64_t n, int64_t k, const float* bias)
    : n_(n), k_(k), data_(static_cast<size_t>(num_panels() * k * kPanelWidth)) {
  Pack([w, k](int64_t row, int64_t i) { return w[row * k + i]; });
  if (bias != nullptr) bias_.assign(bias, bias + n);
}

bool PackedMatrix::PackableView(const runtime::ConstTensorView& w) {
  return w.memory != runtime::MemoryKind::kDevice &&
         (w.type == runtime::ScalarType::kFloat32 || w.type == runtime::ScalarType::kBFloat16 ||
          w.type == runtime::ScalarType::kFloat16);
}

PackedMatrix::PackedMatrix(const runtime::ConstTensorView& w, const float* bias)
    : n_(w.rows), k_(w.cols), data_(static_cast<size_t>(num_panels() * w.cols * kPanelWidth)) {
  switch (w.type) {
    case runtime::ScalarType::kBFloat16:
      Pack([&w](int64_t row, int64_t i) { return BF16ToFloat(w.row<uint16_t>(row)[i]); });
      break;
    case runtime::ScalarType::kFloat16:
      Pack([&w](int64_t row, int64_t i) { return HalfToFloat(w.row<uint16_t>(row)[i]); });
      break;
    default:  // float32 (PackableView)
      Pack([&w](int64_t row, int64_t i) { return w.row<float>(row)[i]; });
      break;
  }
  if (bias != nullptr) bias_.assign(bias, bias + n_);
}

void PackedMatrix::Unpack(std::span<float> w) const {
  // Panels in parallel, like the packing: the quantizer unpacks every linear of a layer once.
  ThreadPool::Default().ParallelFor(
      num_panels(),
      [&](int64_t begin, int64_t end) {
        for (int64_t row = begin * kPanelWidth; row < std::min(n_, end * kPanelWidth); ++row) {
          const float* panel = data_.data() + (row / kPanelWidth) * k_ * kPanelWidth;
          const int64_t lane = row % kPanelWidth;
          for (int64_t i = 0; i < k_; ++i) w[row * k_ + i] = panel[i * kPanelWidth + lane];
        }
      },
      std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, k_ * kPanelWidth)));
}

void Gemm(const float* x, int64_t m, const PackedMatrix& w, float* y) {
  if (m <= 0) return;
  const int64_t panels = w.num_panels();
  // Row blocks big enough to reuse each panel slice, small enough to give every thread work.
  const int64_t row_block = m <= 4 * kMr ? m : 8 * kMr;
  const int64_t row_blocks = (m + row_block - 1) / row_block;
  const int64_t tasks = panels * row_blocks;
  // About 64K multiply-adds per chunk so that small products do not pay for thread wake-ups.
  const int64_t work_per_task = std::min(m, row_block) * kNr * w.k();
  const int64_t min_chunk = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, work_per_task));
  ThreadPool::Default().ParallelFor(
      tasks,
      [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
          const int64_t row_block_index = t / panels;
          const int64_t panel = t % panels;
          const int64_t row_begin = row_block_index * row_block;
          GemmTile(x, w, y, row_begin, std::min(m, row_begin + row_block), panel, panel + 1);
        }
      },
      min_chunk);
}

}  // namespace flatfleet::kernels::cpu
