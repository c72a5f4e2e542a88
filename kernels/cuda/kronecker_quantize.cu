// FlatQuant's Kronecker transform and the per-token quantizer in one kernel on the TF32 tensor
// cores (see kronecker_quantize.h for the numerics and the layout).
#include <atomic>

#include "kernels/cuda/activation_scale_device.cuh"
#include "kernels/cuda/kronecker_quantize_launch.h"
#include "kernels/cuda/per_device_attribute.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kWarps = kKroneckerQuantizeWarps;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxTiles = kKroneckerQuantizeMaxTiles;
constexpr int kMaxLeftSteps = 16;  // n1 / 8 k-steps of the first product (n1 <= 128)
constexpr uint16_t kHalfOne = 0x3c00;
constexpr uint16_t kHalfInfinity = 0x7c00;

__device__ __forceinline__ float LoadAsFloat(const float* row, int64_t i) { return row[i]; }
__device__ __forceinline__ float LoadAsFloat(const uint16_t* row, int64_t i) {
  return __uint_as_float(static_cast<uint32_t>(row[i]) << 16);  // bfloat16 -> float is exact
}

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

template <typename In>
__global__ void __launch_bounds__(kThreads, 1)
    KroneckerQuantizeKernel(const In* x, KroneckerQuantizeParams p) {
  extern __shared__ __align__(16) float shared[];
  const int n1 = p.n1, n2 = p.n2, n = n1 * n2;
  const int ld = n2 + 4;                  // the row's view: stage 2's A loads hit 32 distinct banks
  const int left_ld = n1 + 8;             // P1: stage 1's A loads likewise
  float* view = shared;                   // [n1][ld]: U = x / s, then T in place
  float* left = shared + n1 * ld;         // [n1][left_ld]: P1
  float* warp_max = left + n1 * left_ld;  // [kWarps]: the row's max, per warp
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int g = lane / 4, t = lane % 4;

  const In* x_row = x + blockIdx.x * p.x_stride;
  for (int i = threadIdx.x; i < n; i += kThreads) {
    const int a = i / n2;
    view[a * ld + (i - a * n2)] = __fdiv_rn(LoadAsFloat(x_row, i), p.divisors[i]);
  }
  for (int i = threadIdx.x; i < n1 * n1; i += kThreads) {
    const int r = i / n1;
    left[r * left_ld + (i - r * n1)] = p.p1[i];
  }
  __syncthreads();

  // Stage 1, T = P1^T U: each warp owns column blocks of 8 (all n1 rows), so it reads its U
  // columns into registers and writes T over them.
  const int left_steps = n1 / 8, m_tiles = n1 / 16, n_tiles = n2 / 8;
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
          const uint32_t a[4] = {ToTf32(column[(k * 8 + t) * left_ld]),
                                 ToTf32(column[(k * 8 + t) * left_ld + 8]),
                                 ToTf32(column[(k * 8 + t + 4) * left_ld]),
                                 ToTf32(column[(k * 8 + t + 4) * left_ld + 8])};
          MmaTf32(c, a, b[k][0], b[k][1]);
        }
      }
      float* out = view + (mt * 16 + g) * ld + jb * 8 + 2 * t;
      out[0] = c[0];
      out[1] = c[1];
      out[8 * ld] = c[2];
      out[8 * ld + 1] = c[3];
    }
  }
  __syncthreads();

  // Stage 2, Y = T P2: the warps of one 16-row tile of T split its n2 / 8 column tiles; the
  // outputs stay in registers until the row's scale is known.
  const int warps_per_m_tile = kWarps / m_tiles;
  const int mt = warp / warps_per_m_tile, part = warp % warps_per_m_tile;
  const int per_warp = (n_tiles + warps_per_m_tile - 1) / warps_per_m_tile;
  const int nt_begin = part * per_warp;
  const int my_tiles = mt < m_tiles ? max(0, min(per_warp, n_tiles - nt_begin)) : 0;
  float acc[kMaxTiles][4];
#pragma unroll
  for (int i = 0; i < kMaxTiles; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
  if (my_tiles > 0) {
    const float* t_rows = view + (mt * 16 + g) * ld + t;
    for (int k = 0; k < n_tiles; ++k) {
      const uint32_t a[4] = {ToTf32(t_rows[k * 8]), ToTf32(t_rows[8 * ld + k * 8]),
                             ToTf32(t_rows[k * 8 + 4]), ToTf32(t_rows[8 * ld + k * 8 + 4])};
      const float* right = p.p2 + (k * 8 + t) * n2 + g;
#pragma unroll
      for (int i = 0; i < kMaxTiles; ++i) {
        if (i < my_tiles) {
          const int column = (nt_begin + i) * 8;
          MmaTf32(acc[i], a, ToTf32(__ldg(right + column)), ToTf32(__ldg(right + 4 * n2 + column)));
        }
      }
    }
  }

  // The quantizer: max|t| over the row (order-free), the FP16 scale, the codes.
  float max_abs = 0.0f;
  bool finite = true;
#pragma unroll
  for (int i = 0; i < kMaxTiles; ++i) {
    if (i < my_tiles) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        finite = finite && isfinite(acc[i][e]);
        max_abs = fmaxf(max_abs, fabsf(acc[i][e]));
      }
    }
  }
  const bool all_finite = __syncthreads_and(finite);
  for (int offset = 16; offset > 0; offset /= 2) {
    max_abs = fmaxf(max_abs, __shfl_xor_sync(0xffffffffu, max_abs, offset));
  }
  if (lane == 0) warp_max[warp] = max_abs;
  __syncthreads();
  max_abs = warp_max[0];
  for (int w = 1; w < kWarps; ++w) max_abs = fmaxf(max_abs, warp_max[w]);
  const float exact_scale = __fdiv_rn(__fmul_rn(max_abs, p.clip_ratio), static_cast<float>(p.qmax));
  uint16_t scale_bits = exact_scale > 0.0f ? ScaleToHalfRoundingUp(exact_scale) : kHalfOne;
  const bool failed = !all_finite || scale_bits >= kHalfInfinity;
  if (failed) scale_bits = kHalfInfinity;
  if (threadIdx.x == 0) p.scales[blockIdx.x] = scale_bits;
  const float scale = __half2float(__ushort_as_half(scale_bits));
  int8_t* row_codes = p.codes + blockIdx.x * p.codes_stride;
#pragma unroll
  for (int i = 0; i < kMaxTiles; ++i) {
    if (i < my_tiles) {
      int code[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        code[e] = failed ? 0 : __float2int_rn(__fdiv_rn(acc[i][e], scale));
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

template <typename In>
cudaError_t Launch(const In* x, const KroneckerQuantizeParams& p, cudaStream_t stream) {
  static std::atomic<uint64_t> configured_devices{0};
  const auto kernel = KroneckerQuantizeKernel<In>;
  if (const cudaError_t error = SetMaxDynamicSharedMemoryOncePerDevice(
          configured_devices, kernel, kKroneckerQuantizeMaxSharedBytes);
      error != cudaSuccess) {
    return error;
  }
  const auto bytes = static_cast<size_t>(KroneckerQuantizeSharedBytes(p.n1, p.n2));
  kernel<<<static_cast<unsigned>(p.rows), kThreads, bytes, stream>>>(x, p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchKroneckerQuantize(const KroneckerQuantizeParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  return p.x_is_bf16 ? Launch(static_cast<const uint16_t*>(p.x), p, stream)
                     : Launch(static_cast<const float*>(p.x), p, stream);
}

}  // namespace flatfleet::cuda::internal
