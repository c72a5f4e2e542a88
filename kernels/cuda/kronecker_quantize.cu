// FlatQuant's Kronecker transform and the per-token quantizer in one kernel on the TF32 tensor
// cores (see kronecker_quantize.h for the numerics and the layout).
#include <atomic>

#include "kernels/cuda/activation_device.cuh"
#include "kernels/cuda/kronecker_quantize_launch.h"
#include "kernels/cuda/per_device_attribute.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kWarps = kKroneckerQuantizeWarps;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxLeftSteps = 16;  // n1 / 8 k-steps of the first product (n1 <= 128)
constexpr uint16_t kHalfOne = 0x3c00;
constexpr uint16_t kHalfInfinity = 0x7c00;

__device__ __forceinline__ uint32_t ToTf32(float v) {
  uint32_t bits;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(bits) : "f"(v));
  return bits;
}

// c += a b for one m16n8k8 TF32 tile (a: rows g, g + 8 at columns t, t + 4; b: rows t, t + 4 at
// column g; c: rows g, g + 8 at columns 2t, 2t + 1; g = lane / 4, t = lane % 4).
__device__ __forceinline__ void MmaTf32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// kRows token rows per block: stage 2's P2 fragments (the B operand, read from L2) serve all of
// them; kTiles output tiles per warp and row (kRows * kTiles <= 16 accumulator tiles).
template <typename In, int kRows, int kTiles>
__global__ void __launch_bounds__(kThreads, 1)
    KroneckerQuantizeKernel(const In* x, KroneckerQuantizeParams p) {
  extern __shared__ __align__(16) float shared[];
  const int n1 = p.n1, n2 = p.n2, n = n1 * n2;
  const int ld = n2 + 4;       // a row's view: stage 2's A loads hit 32 distinct banks
  const int left_ld = n1 + 8;  // P1: stage 1's A loads likewise
  const int view_floats = n1 * ld;
  float* views = shared;                       // kRows x [n1][ld]: U = x / s, then T in place
  float* left = shared + kRows * view_floats;  // [n1][left_ld]: P1 as TF32
  float* warp_max = left + n1 * left_ld;       // [kRows][kWarps]: each row's max, per warp
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int g = lane / 4, t = lane % 4;
  const int64_t first_row = static_cast<int64_t>(blockIdx.x) * kRows;

#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    float* view = views + r * view_floats;
    const bool present = first_row + r < p.rows;  // rows past the end compute zeros, unstored
    const In* x_row = x + (present ? first_row + r : 0) * p.x_stride;
    for (int i = threadIdx.x; i < n; i += kThreads) {
      const int a = i / n2;
      view[a * ld + (i - a * n2)] =
          present ? __fdiv_rn(LoadAsFloat(x_row, i), p.divisors[i]) : 0.0f;
    }
  }
  for (int i = threadIdx.x; i < n1 * n1; i += kThreads) {
    const int r = i / n1;
    left[r * left_ld + (i - r * n1)] = __uint_as_float(ToTf32(p.p1[i]));
  }
  __syncthreads();

  // Stage 1, T = P1^T U, row by row: each warp owns column blocks of 8 (all n1 rows), so it reads
  // its U columns into registers and writes T over them, already rounded to TF32 (stage 2's
  // operand rounding, done once).
  const int left_steps = n1 / 8, m_tiles = n1 / 16, n_tiles = n2 / 8;
  for (int r = 0; r < kRows; ++r) {
    float* view = views + r * view_floats;
    for (int jb = warp; jb < n_tiles; jb += kWarps) {
      uint32_t b[kMaxLeftSteps][2];
#pragma unroll
      for (int k = 0; k < kMaxLeftSteps; ++k) {
        if (k < left_steps) {
          b[k][0] = ToTf32(view[(k * 8 + t) * ld + jb * 8 + g]);
          b[k][1] = ToTf32(view[(k * 8 + t + 4) * ld + jb * 8 + g]);
        }
      }
      __syncwarp();
      for (int mt = 0; mt < m_tiles; ++mt) {
        float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int k = 0; k < kMaxLeftSteps; ++k) {
          if (k < left_steps) {
            // A = P1^T: element (a, i) is P1[i][a].
            const float* column = left + mt * 16 + g;
            const uint32_t a[4] = {__float_as_uint(column[(k * 8 + t) * left_ld]),
                                   __float_as_uint(column[(k * 8 + t) * left_ld + 8]),
                                   __float_as_uint(column[(k * 8 + t + 4) * left_ld]),
                                   __float_as_uint(column[(k * 8 + t + 4) * left_ld + 8])};
            MmaTf32(c, a, b[k][0], b[k][1]);
          }
        }
        float* out = view + (mt * 16 + g) * ld + jb * 8 + 2 * t;
        out[0] = __uint_as_float(ToTf32(c[0]));
        out[1] = __uint_as_float(ToTf32(c[1]));
        out[8 * ld] = __uint_as_float(ToTf32(c[2]));
        out[8 * ld + 1] = __uint_as_float(ToTf32(c[3]));
      }
    }
  }
  __syncthreads();

  // Stage 2, Y = T P2: the warps of one 16-row tile of T split its n2 / 8 column tiles, for every
  // row of the block; the outputs stay in registers until each row's scale is known.
  const int warps_per_m_tile = kWarps / m_tiles;
  const int mt = warp / warps_per_m_tile, part = warp % warps_per_m_tile;
  const int per_warp = (n_tiles + warps_per_m_tile - 1) / warps_per_m_tile;
  const int nt_begin = part * per_warp;
  const int my_tiles = mt < m_tiles ? max(0, min(per_warp, n_tiles - nt_begin)) : 0;
  float acc[kRows][kTiles][4];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int i = 0; i < kTiles; ++i)
      acc[r][i][0] = acc[r][i][1] = acc[r][i][2] = acc[r][i][3] = 0.0f;
  }
  if (my_tiles > 0) {
    const int t_offset = (mt * 16 + g) * ld + t;
    for (int k = 0; k < n_tiles; ++k) {
      uint32_t a[kRows][4];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const float* t_rows = views + r * view_floats + t_offset + k * 8;
        a[r][0] = __float_as_uint(t_rows[0]);
        a[r][1] = __float_as_uint(t_rows[8 * ld]);
        a[r][2] = __float_as_uint(t_rows[4]);
        a[r][3] = __float_as_uint(t_rows[8 * ld + 4]);
      }
      const float* right = p.p2 + (k * 8 + t) * n2 + g;
#pragma unroll
      for (int i = 0; i < kTiles; ++i) {
        if (i < my_tiles) {
          const int column = (nt_begin + i) * 8;
          const uint32_t b0 = ToTf32(__ldg(right + column));
          const uint32_t b1 = ToTf32(__ldg(right + 4 * n2 + column));
#pragma unroll
          for (int r = 0; r < kRows; ++r) MmaTf32(acc[r][i], a[r], b0, b1);
        }
      }
    }
  }

  // The quantizer, per row: max|t| (order-free), the FP16 scale, the codes.
  bool finite[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    float max_abs = 0.0f;
    finite[r] = true;
#pragma unroll
    for (int i = 0; i < kTiles; ++i) {
      if (i < my_tiles) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          finite[r] = finite[r] && isfinite(acc[r][i][e]);
          max_abs = fmaxf(max_abs, fabsf(acc[r][i][e]));
        }
      }
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      max_abs = fmaxf(max_abs, __shfl_xor_sync(0xffffffffu, max_abs, offset));
    }
    if (lane == 0) warp_max[r * kWarps + warp] = max_abs;
  }
  bool all_finite[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) all_finite[r] = __syncthreads_and(finite[r]);  // also a barrier
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int64_t row = first_row + r;
    if (row >= p.rows) break;
    float max_abs = warp_max[r * kWarps];
    for (int w = 1; w < kWarps; ++w) max_abs = fmaxf(max_abs, warp_max[r * kWarps + w]);
    const float exact_scale =
        __fdiv_rn(__fmul_rn(max_abs, p.clip_ratio), static_cast<float>(p.qmax));
    uint16_t scale_bits = exact_scale > 0.0f ? ScaleToHalfRoundingUp(exact_scale) : kHalfOne;
    const bool failed = !all_finite[r] || scale_bits >= kHalfInfinity;
    if (failed) scale_bits = kHalfInfinity;
    if (threadIdx.x == 0) p.scales[row] = scale_bits;
    const float scale = __half2float(__ushort_as_half(scale_bits));
    int8_t* row_codes = p.codes + row * p.codes_stride;
#pragma unroll
    for (int i = 0; i < kTiles; ++i) {
      if (i < my_tiles) {
        int code[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          code[e] = failed ? 0 : __float2int_rn(__fdiv_rn(acc[r][i][e], scale));
          code[e] = min(max(code[e], -p.qmax), p.qmax);
        }
        const int column = (nt_begin + i) * 8 + 2 * t;
        char2* top = reinterpret_cast<char2*>(row_codes + (mt * 16 + g) * n2 + column);
        char2* bottom = reinterpret_cast<char2*>(row_codes + (mt * 16 + g + 8) * n2 + column);
        *top = make_char2(static_cast<char>(code[0]), static_cast<char>(code[1]));
        *bottom = make_char2(static_cast<char>(code[2]), static_cast<char>(code[3]));
      }
    }
    for (int64_t i = n + threadIdx.x; i < p.codes_stride; i += kThreads) row_codes[i] = 0;
  }
}

template <typename In, int kRows, int kTiles>
cudaError_t Launch(const In* x, const KroneckerQuantizeParams& p, cudaStream_t stream) {
  static std::atomic<uint64_t> configured_devices{0};
  const auto kernel = KroneckerQuantizeKernel<In, kRows, kTiles>;
  if (const cudaError_t error = SetMaxDynamicSharedMemoryOncePerDevice(
          configured_devices, kernel, kKroneckerQuantizeMaxSharedBytes);
      error != cudaSuccess) {
    return error;
  }
  const auto bytes = static_cast<size_t>(KroneckerQuantizeSharedBytes(p.n1, p.n2, kRows));
  const auto blocks = static_cast<unsigned>((p.rows + kRows - 1) / kRows);
  kernel<<<blocks, kThreads, bytes, stream>>>(x, p);
  return cudaGetLastError();
}

template <typename In>
cudaError_t LaunchRows(const In* x, const KroneckerQuantizeParams& p, cudaStream_t stream) {
  switch (p.rows_per_block) {
    case 4:
      return Launch<In, 4, 4>(x, p, stream);
    case 2:
      return Launch<In, 2, 8>(x, p, stream);
    default:
      return Launch<In, 1, 16>(x, p, stream);
  }
}

}  // namespace

cudaError_t LaunchKroneckerQuantize(const KroneckerQuantizeParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  return p.x_is_bf16 ? LaunchRows(static_cast<const uint16_t*>(p.x), p, stream)
                     : LaunchRows(static_cast<const float*>(p.x), p, stream);
}

}  // namespace flatfleet::cuda::internal
