#include "kernels/cpu/quant/group_dot_products.h"

#include <algorithm>
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
// The eight lanes' total of each of the eight accumulators a[0..7], as one vector of int32.
inline __m256i HorizontalSums8(const __m256i* a) {
  const __m256i ab = _mm256_hadd_epi32(a[0], a[1]);
  const __m256i cd = _mm256_hadd_epi32(a[2], a[3]);
  const __m256i ef = _mm256_hadd_epi32(a[4], a[5]);
  const __m256i gh = _mm256_hadd_epi32(a[6], a[7]);
  const __m256i abcd = _mm256_hadd_epi32(ab, cd);  // per 128-bit half: a b c d
  const __m256i efgh = _mm256_hadd_epi32(ef, gh);
  // low halves + high halves: [a b c d e f g h]
  const __m256i low = _mm256_permute2x128_si256(abcd, efgh, 0x20);
  const __m256i high = _mm256_permute2x128_si256(abcd, efgh, 0x31);
  return _mm256_add_epi32(low, high);
}

// Two activation rows x four weight rows (both int16) over n elements (a multiple of 16), the
// eight accumulators kept in registers: sums[r * 4 + c] for row r, weight c. vpmaddwd's pair sums
// and the adds are exact in int32 (bounded by the caller's check).
inline void Dot2x4(const int16_t* x0, const int16_t* x1, const int16_t* w, int64_t w_stride,
                   int64_t n, int32_t* sums) {
  __m256i acc[8];
  for (__m256i& a : acc) a = _mm256_setzero_si256();
  for (int64_t i = 0; i < n; i += 16) {
    const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0 + i));
    const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x1 + i));
    for (int c = 0; c < 4; ++c) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + c * w_stride + i));
      acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(a0, b));
      acc[4 + c] = _mm256_add_epi32(acc[4 + c], _mm256_madd_epi16(a1, b));
    }
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums), HorizontalSums8(acc));
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

  const int64_t weight_tiles = (n_size + kWeightRowsPerTile - 1) / kWeightRowsPerTile;
  const int64_t activation_tiles = (m_size + kActivationRowsPerTile - 1) / kActivationRowsPerTile;
  const int64_t work_per_task =
      std::min(m_size, kActivationRowsPerTile) * kWeightRowsPerTile * k_size;
#if defined(__AVX2__)
  const bool pairs = group_size % 16 == 0;  // Dot2x4's step
#else
  const bool pairs = false;
#endif
  pool.ParallelFor(
      weight_tiles * activation_tiles,
      [&](int64_t begin, int64_t end) {
        std::vector<int32_t> sums(static_cast<size_t>(2 * kWeightRowsPerTile * groups));
        std::vector<int16_t> widened(pairs ? static_cast<size_t>(kWeightRowsPerTile * k_size) : 0);
        int64_t widened_tile = -1;
        for (int64_t task = begin; task < end; ++task) {
          const int64_t tile = task / activation_tiles;
          const int64_t n_begin = tile * kWeightRowsPerTile;
          const int64_t n_end = std::min(n_size, n_begin + kWeightRowsPerTile);
          const int64_t m_begin = (task % activation_tiles) * kActivationRowsPerTile;
          const int64_t m_end = std::min(m_size, m_begin + kActivationRowsPerTile);
          const int8_t* tile_codes = weights.codes.data() + n_begin * k_size;
          // Row m's raw sums for the tile's weight rows, into out[(n - n_begin) * groups + g].
          auto raw_sums_one_row = [&](int64_t m, int32_t* out) {
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
                  out[(n - n_begin + r) * groups + g] = four[r];
                }
              }
              for (; n < n_end; ++n) {
                out[(n - n_begin) * groups + g] =
                    Dot1(xg, weights.codes.data() + n * k_size + offset, group_size);
              }
            }
          };
          // Raw sums to centred ones (see above), then the caller's fold.
          auto finish_row = [&](int64_t m, int32_t* out) {
            if (balanced || zero_points) {
              const int32_t* x_sums = &x_group_sums[m * groups];
              for (int64_t n = n_begin; n < n_end; ++n) {
                for (int64_t g = 0; g < groups; ++g) {
                  int32_t& sum = out[(n - n_begin) * groups + g];
                  // In int64: the centred result fits int32 (checked), the terms need not.
                  const int64_t raw = sum;
                  sum = static_cast<int32_t>(balanced ? 2 * raw + x_sums[g]
                                                      : raw - int64_t{weights.ZeroPoint(n, g)} *
                                                                  x_sums[g]);
                }
              }
            }
            fold(m, n_begin, n_end, out);
          };
          int32_t* first = sums.data();
          int32_t* second = sums.data() + kWeightRowsPerTile * groups;
          int64_t m = m_begin;
#if defined(__AVX2__)
          if (pairs && m_end - m_begin >= 2) {
            if (tile != widened_tile) {  // raw codes to int16 once per tile, for vpmaddwd
              for (int64_t i = 0; i < (n_end - n_begin) * k_size; ++i) {
                widened[i] = tile_codes[i];
              }
              widened_tile = tile;
            }
            for (; m + 2 <= m_end; m += 2) {
              const int16_t* row0 = &x[m * k_size];
              const int16_t* row1 = &x[(m + 1) * k_size];
              for (int64_t g = 0; g < groups; ++g) {
                const int64_t offset = g * group_size;
                int64_t n = n_begin;
                for (; n + 4 <= n_end; n += 4) {
                  int32_t eight[8];
                  Dot2x4(row0 + offset, row1 + offset, &widened[(n - n_begin) * k_size + offset],
                         k_size, group_size, eight);
                  for (int64_t c = 0; c < 4; ++c) {
                    first[(n - n_begin + c) * groups + g] = eight[c];
                    second[(n - n_begin + c) * groups + g] = eight[4 + c];
                  }
                }
                for (; n < n_end; ++n) {
                  const int8_t* w = weights.codes.data() + n * k_size + offset;
                  first[(n - n_begin) * groups + g] = Dot1(row0 + offset, w, group_size);
                  second[(n - n_begin) * groups + g] = Dot1(row1 + offset, w, group_size);
                }
              }
              finish_row(m, first);
              finish_row(m + 1, second);
            }
          }
#endif
          for (; m < m_end; ++m) {
            raw_sums_one_row(m, first);
            finish_row(m, first);
          }
        }
      },
      std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, work_per_task)));
}

}  // namespace flatfleet::quant
