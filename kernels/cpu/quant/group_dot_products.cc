#include "kernels/cpu/quant/group_dot_products.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "common/thread_pool.h"

namespace flatfleet::quant {
namespace {

// Weight rows per task: a tile of 16 x K int8 codes (64 KiB at K = 4096) stays in L2 while the
// task's activation rows pass over it.
constexpr int64_t kWeightRowsPerTile = 16;
// Activation rows per task: enough to reuse the weight tile, few enough that calibration-sized
// batches still give every thread tiles.
constexpr int64_t kActivationRowsPerTile = 64;
// Weight rows one pass over an activation row feeds (each x load serves four products).
constexpr int64_t kWeightRowsPerPass = 4;
// Activation rows per task on the panel path: the panel is packed once per task (and reused by
// the thread's next task on the same weight tile), so a task spans many rows to amortise it.
constexpr int64_t kPanelActivationRowsPerTile = 256;

// sum x[i] * w_r[i] for four weight rows at once. Plain loops over int16 x int8 that GCC -O3
// vectorises (widening, vpmaddwd). Exact: no partial sum can overflow int32 (the caller's
// CheckInt32Gemm bounds K * max|x| * max|code|, and a raw code is no larger than a centred one).
inline void Dot4(const int16_t* __restrict x, const int8_t* __restrict w0,
                 const int8_t* __restrict w1, const int8_t* __restrict w2,
                 const int8_t* __restrict w3, int64_t n, int32_t* sums) {
  int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t xv = x[i];
    a0 += xv * w0[i];
    a1 += xv * w1[i];
    a2 += xv * w2[i];
    a3 += xv * w3[i];
  }
  sums[0] = a0;
  sums[1] = a1;
  sums[2] = a2;
  sums[3] = a3;
}

inline int32_t Dot1(const int16_t* __restrict x, const int8_t* __restrict w, int64_t n) {
  int32_t acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += int32_t{x[i]} * w[i];
  return acc;
}

#if defined(__AVX2__)
// The panel path (AVX2): weight rows in panels of 16, their raw codes widened to int16 and
// interleaved in K pairs, panel[(p * 16 + r) * 2 + j] = code[r][2 p + j], so one 32-byte load
// holds one K pair of eight weight rows and vpmaddwd against a broadcast activation pair gives
// eight weight rows' pair sums. The accumulators are indexed by weight row, as the float GEMM's
// are by output column: a group's sums come out of the lanes with no horizontal reduction.
constexpr int64_t kPanelRows = 16;
// Activation rows per micro-kernel call: 6 x 2 accumulators, two panel vectors and a broadcast
// take 15 of the 16 ymm registers.
constexpr int kPanelMr = 6;

// 8 x 8 transpose of 32-bit units: row r's unit p to out[p]'s lane r.
inline void Transpose8x8(const __m256i* in, __m256i* out) {
  __m256i t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_epi32(in[2 * i], in[2 * i + 1]);      // units 0 1 | 4 5
    t[2 * i + 1] = _mm256_unpackhi_epi32(in[2 * i], in[2 * i + 1]);  // units 2 3 | 6 7
  }
  for (int h = 0; h < 2; ++h) {  // rows 0-3, rows 4-7
    const __m256i* th = t + 4 * h;
    u[4 * h + 0] = _mm256_unpacklo_epi64(th[0], th[2]);  // unit 0 | 4
    u[4 * h + 1] = _mm256_unpackhi_epi64(th[0], th[2]);  // unit 1 | 5
    u[4 * h + 2] = _mm256_unpacklo_epi64(th[1], th[3]);  // unit 2 | 6
    u[4 * h + 3] = _mm256_unpackhi_epi64(th[1], th[3]);  // unit 3 | 7
  }
  for (int p = 0; p < 4; ++p) {
    out[p] = _mm256_permute2x128_si256(u[p], u[4 + p], 0x20);
    out[p + 4] = _mm256_permute2x128_si256(u[p], u[4 + p], 0x31);
  }
}

// Packs `rows` (at most 16) weight rows of int8 codes, `k_size` (even) long, into the panel
// layout above; rows past `rows` are zero, so their lanes' sums are zero and never read.
void PackPanel(const int8_t* codes, int64_t k_size, int64_t rows, int16_t* panel) {
  int64_t k = 0;
  for (; k + 16 <= k_size; k += 16) {
    __m256i widened[kPanelRows];  // row r's K pairs k/2 .. k/2 + 7 as 32-bit units
    for (int64_t r = 0; r < kPanelRows; ++r) {
      widened[r] = r < rows ? _mm256_cvtepi8_epi16(_mm_loadu_si128(
                                  reinterpret_cast<const __m128i*>(codes + r * k_size + k)))
                            : _mm256_setzero_si256();
    }
    __m256i low[8], high[8];  // pair p of rows 0-7, of rows 8-15
    Transpose8x8(widened, low);
    Transpose8x8(widened + 8, high);
    int16_t* out = panel + k * kPanelRows;  // pair k/2's 32 values
    for (int p = 0; p < 8; ++p) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + p * 32), low[p]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + p * 32 + 16), high[p]);
    }
  }
  for (; k < k_size; k += 2) {
    int16_t* out = panel + k * kPanelRows;
    for (int64_t r = 0; r < kPanelRows; ++r) {
      out[2 * r] = r < rows ? codes[r * k_size + k] : 0;
      out[2 * r + 1] = r < rows ? codes[r * k_size + k + 1] : 0;
    }
  }
}

// MR activation rows (int16, `ldx` apart) against one panel over `pairs` K pairs:
// out[i * 16 + r] = sum_k x_i[k] * w_r[k]. vpmaddwd's pair sums are exact (|x| and |code| far
// below 2^15) and the int32 lane sums wrap modulo 2^32 at worst, so the centred results that the
// caller derives from them, which fit int32 (CheckInt32Gemm), are exact.
template <int MR>
void PanelKernel(const int16_t* x, int64_t ldx, const int16_t* panel, int64_t pairs, int32_t* out) {
  __m256i acc[MR][2];
  for (auto& row : acc) row[0] = row[1] = _mm256_setzero_si256();
  for (int64_t p = 0; p < pairs; ++p) {
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + p * 32));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + p * 32 + 16));
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      int32_t pair;
      std::memcpy(&pair, x + i * ldx + 2 * p, sizeof(pair));
      const __m256i a = _mm256_set1_epi32(pair);
      acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(a, b0));
      acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(a, b1));
    }
  }
  for (int i = 0; i < MR; ++i) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i * 16), acc[i][0]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i * 16 + 8), acc[i][1]);
  }
}

void RunPanelKernel(int rows, const int16_t* x, int64_t ldx, const int16_t* panel, int64_t pairs,
                    int32_t* out) {
  switch (rows) {
    case 1:
      return PanelKernel<1>(x, ldx, panel, pairs, out);
    case 2:
      return PanelKernel<2>(x, ldx, panel, pairs, out);
    case 3:
      return PanelKernel<3>(x, ldx, panel, pairs, out);
    case 4:
      return PanelKernel<4>(x, ldx, panel, pairs, out);
    case 5:
      return PanelKernel<5>(x, ldx, panel, pairs, out);
    default:
      return PanelKernel<6>(x, ldx, panel, pairs, out);
  }
}

// Raw panel sums to centred ones in place (the identities above ForEachGroupDotProducts), eight
// weight rows a vector: sums[r] -= zeros[r] * x_sum, or 2 sums[r] + x_sum when balanced. The int32
// lanes wrap modulo 2^32; the results fit int32 (CheckInt32Gemm), so they are exact.
inline void CenterPanelSums(bool balanced, const int32_t* zeros, int32_t x_sum, int32_t* sums) {
  const __m256i xs = _mm256_set1_epi32(x_sum);
  for (int h = 0; h < 2; ++h) {
    __m256i* v = reinterpret_cast<__m256i*>(sums + 8 * h);
    const __m256i raw = _mm256_loadu_si256(v);
    const __m256i centred =
        balanced ? _mm256_add_epi32(_mm256_add_epi32(raw, raw), xs)
                 : _mm256_sub_epi32(
                       raw, _mm256_mullo_epi32(
                                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zeros + 8 * h)),
                                xs));
    _mm256_storeu_si256(v, centred);
  }
}

#endif

}  // namespace

void CenterRow(const QuantizedMatrix& matrix, int64_t row, int16_t* out) {
  const int64_t cols = matrix.cols;
  const int8_t* codes = matrix.codes.data() + row * cols;
  if (matrix.format.balanced) {
    for (int64_t c = 0; c < cols; ++c) out[c] = static_cast<int16_t>(2 * codes[c] + 1);
    return;
  }
  const int64_t group_size = matrix.GroupSize();
  const int64_t groups = matrix.GroupsPerRow();
  for (int64_t g = 0; g < groups; ++g) {
    const int16_t zero = static_cast<int16_t>(matrix.ZeroPoint(row, g));
    for (int64_t c = g * group_size; c < (g + 1) * group_size; ++c) {
      out[c] = static_cast<int16_t>(codes[c] - zero);
    }
  }
}

// The weights are used as their raw int8 codes c, never centred or copied:
//   sum_k x (c - z_g)   = sum_k x c - z_g * sum_k x        (zero points)
//   sum_k x (2 c + 1)   = 2 sum_k x c + sum_k x             (balanced codes)
// with sum_k x over the weight group, once per activation row and group. All exact integers.
void ForEachGroupDotProducts(const QuantizedMatrix& activations, const QuantizedMatrix& weights,
                             GroupSumsFold fold) {
  const int64_t m_size = activations.rows;
  const int64_t n_size = weights.rows;
  const int64_t k_size = weights.cols;
  if (m_size == 0 || n_size == 0) return;
  const int64_t group_size = weights.GroupSize();
  const int64_t groups = weights.GroupsPerRow();
  const bool balanced = weights.format.balanced;
  const bool zero_points = !weights.format.symmetric;
  ThreadPool& pool = ThreadPool::Default();

  // Centred activation rows and their per-group sums.
  std::vector<int16_t> x(static_cast<size_t>(m_size * k_size));
  std::vector<int32_t> x_group_sums(static_cast<size_t>(m_size * groups));
  pool.ParallelFor(
      m_size,
      [&](int64_t begin, int64_t end) {
        for (int64_t m = begin; m < end; ++m) {
          int16_t* row = &x[m * k_size];
          CenterRow(activations, m, row);
          for (int64_t g = 0; g < groups; ++g) {
            int32_t sum = 0;
            for (int64_t k = g * group_size; k < (g + 1) * group_size; ++k) sum += row[k];
            x_group_sums[m * groups + g] = sum;
          }
        }
      },
      std::max<int64_t>(1, (int64_t{1} << 16) / k_size));

#if defined(__AVX2__)
  // Even groups, so a K pair never straddles two. A single row uses each code once, so packing
  // would only add a pass: decode keeps the direct loop over the int8 codes.
  const bool panels = group_size % 2 == 0 && m_size >= 2;
#else
  const bool panels = false;
#endif
  const int64_t rows_per_tile = panels ? kPanelActivationRowsPerTile : kActivationRowsPerTile;
  const int64_t weight_tiles = (n_size + kWeightRowsPerTile - 1) / kWeightRowsPerTile;
  const int64_t activation_tiles = (m_size + rows_per_tile - 1) / rows_per_tile;
  const int64_t work_per_task = std::min(m_size, rows_per_tile) * kWeightRowsPerTile * k_size;
  pool.ParallelFor(
      weight_tiles * activation_tiles,
      [&](int64_t begin, int64_t end) {
        // One row's sums for the tile on the direct path, in the fold's order.
        std::vector<int32_t> sums(static_cast<size_t>(kWeightRowsPerTile * groups));
#if defined(__AVX2__)
        // The packed panel (32-byte aligned) and one micro-kernel call's sums per group,
        // block[(g * kPanelMr + i) * 16 + r].
        std::vector<int16_t> panel_storage(panels ? static_cast<size_t>(kPanelRows * k_size + 16)
                                                  : 0);
        int16_t* panel = reinterpret_cast<int16_t*>(
            (reinterpret_cast<uintptr_t>(panel_storage.data()) + 31) & ~uintptr_t{31});
        std::vector<int32_t> block(panels ? static_cast<size_t>(groups * kPanelMr * kPanelRows)
                                          : 0);
        // The tile's zero points, zeros[g * 16 + r] (zero for padding rows).
        std::vector<int32_t> zeros(panels && zero_points ? static_cast<size_t>(groups * kPanelRows)
                                                         : 0);
        int64_t packed_tile = -1;
#endif
        for (int64_t task = begin; task < end; ++task) {
          const int64_t tile = task / activation_tiles;
          const int64_t n_begin = tile * kWeightRowsPerTile;
          const int64_t n_end = std::min(n_size, n_begin + kWeightRowsPerTile);
          const int64_t m_begin = (task % activation_tiles) * rows_per_tile;
          const int64_t m_end = std::min(m_size, m_begin + rows_per_tile);
#if defined(__AVX2__)
          if (panels) {
            static_assert(kPanelRows == kWeightRowsPerTile);
            if (tile != packed_tile) {
              PackPanel(weights.codes.data() + n_begin * k_size, k_size, n_end - n_begin, panel);
              if (zero_points) {
                for (int64_t g = 0; g < groups; ++g) {
                  for (int64_t r = 0; r < kPanelRows; ++r) {
                    zeros[g * kPanelRows + r] =
                        n_begin + r < n_end ? weights.ZeroPoint(n_begin + r, g) : 0;
                  }
                }
              }
              packed_tile = tile;
            }
            for (int64_t m = m_begin; m < m_end; m += kPanelMr) {
              const int rows = static_cast<int>(std::min<int64_t>(kPanelMr, m_end - m));
              for (int64_t g = 0; g < groups; ++g) {
                RunPanelKernel(rows, &x[m * k_size + g * group_size], k_size,
                               panel + g * group_size * kPanelRows, group_size / 2,
                               &block[g * kPanelMr * kPanelRows]);
              }
              for (int i = 0; i < rows; ++i) {
                int32_t* row_block = &block[i * kPanelRows];
                if (balanced || zero_points) {
                  const int32_t* x_sums = &x_group_sums[(m + i) * groups];
                  for (int64_t g = 0; g < groups; ++g) {
                    CenterPanelSums(balanced, zero_points ? &zeros[g * kPanelRows] : nullptr,
                                    x_sums[g], row_block + g * kPanelMr * kPanelRows);
                  }
                }
                fold(m + i, n_begin, n_end, row_block, kPanelMr * kPanelRows);
              }
            }
            continue;
          }
#endif
          // Raw sums to centred ones (see above), then the caller's fold.
          auto finish_row = [&](int64_t m, int32_t* row_sums) {
            if (balanced || zero_points) {
              const int32_t* x_sums = &x_group_sums[m * groups];
              for (int64_t n = n_begin; n < n_end; ++n) {
                for (int64_t g = 0; g < groups; ++g) {
                  int32_t& sum = row_sums[g * kWeightRowsPerTile + (n - n_begin)];
                  // In int64: the centred result fits int32 (checked), the terms need not.
                  const int64_t raw = sum;
                  sum = static_cast<int32_t>(
                      balanced ? 2 * raw + x_sums[g]
                               : raw - int64_t{weights.zero_points[n * groups + g]} * x_sums[g]);
                }
              }
            }
            fold(m, n_begin, n_end, row_sums, kWeightRowsPerTile);
          };
          int32_t* out = sums.data();
          // Row m's raw sums for the tile's weight rows, into out[g * 16 + (n - n_begin)].
          for (int64_t m = m_begin; m < m_end; ++m) {
            const int16_t* row = &x[m * k_size];
            for (int64_t g = 0; g < groups; ++g) {
              const int16_t* xg = row + g * group_size;
              const int64_t offset = g * group_size;
              int64_t n = n_begin;
              for (; n + kWeightRowsPerPass <= n_end; n += kWeightRowsPerPass) {
                const int8_t* w = weights.codes.data() + n * k_size + offset;
                int32_t four[kWeightRowsPerPass];
                Dot4(xg, w, w + k_size, w + 2 * k_size, w + 3 * k_size, group_size, four);
                for (int64_t r = 0; r < kWeightRowsPerPass; ++r) {
                  out[g * kWeightRowsPerTile + (n - n_begin + r)] = four[r];
                }
              }
              for (; n < n_end; ++n) {
                out[g * kWeightRowsPerTile + (n - n_begin)] =
                    Dot1(xg, weights.codes.data() + n * k_size + offset, group_size);
              }
            }
            finish_row(m, out);
          }
        }
      },
      std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, work_per_task)));
}

}  // namespace flatfleet::quant
