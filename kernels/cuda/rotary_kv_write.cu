// Rotary position embedding + KV-cache write after the fused qkv GEMM. One block per row: its
// threads first compute the row's cos/sin table (head_dim / 2 angles, shared by every head), then
// each warp takes whole heads, so a head's max|x| for INT8 is one warp reduction.
//
// Numerics follow kernels/cpu/rotary.cc and kernels/cpu/kv_quantization.cc:
//   angle = float(position) * inv_freq[i]               (float32 product, as transformers)
//   cos/sin = float(cos/sin(double(angle)))             (the reference's double functions; the
//                                                        GPU's double sincos is within 2 double
//                                                        ulps, so the float results agree except
//                                                        within ~2^-29 of a float rounding tie)
//   x'[i] = fma(x[i], c, -(x[i + h] s)),  x'[i + h] = fma(x[i + h], c, x[i] s)   (the reference's
//                                                        explicit fused multiply-adds)
//   INT8: scale = fp16(max|x'| / 127), code = clamp(round_half_away(x' / scale), -127, 127).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/rotary_kv_write_launch.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxHalf = kRotaryMaxHeadDim / 2;

// kVec consecutive bf16 values <-> floats (kVec = 2: one 4-byte access).
template <int kVec>
__device__ __forceinline__ void LoadBf16(const __nv_bfloat16* p, float (&out)[kVec]) {
  if constexpr (kVec == 1) {
    out[0] = __bfloat162float(p[0]);
  } else {
    const __nv_bfloat162 v = *reinterpret_cast<const __nv_bfloat162*>(p);
    out[0] = __low2float(v);
    out[1] = __high2float(v);
  }
}

template <int kVec>
__device__ __forceinline__ void StoreBf16(__nv_bfloat16* p, const float (&in)[kVec]) {
  if constexpr (kVec == 1) {
    p[0] = __float2bfloat16_rn(in[0]);
  } else {
    *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(in[0], in[1]);
  }
}

// The reference's code for one value: scale > 0 ? clamp(round(x / scale), -127, 127) : 0.
__device__ __forceinline__ int8_t QuantizeValue(float x, float scale) {
  if (!(scale > 0.0f)) return 0;
  const float q = fminf(fmaxf(roundf(__fdiv_rn(x, scale)), -127.0f), 127.0f);
  return static_cast<int8_t>(static_cast<int>(q));
}

template <int kVec>
__device__ __forceinline__ void StoreCodes(int8_t* p, const float (&in)[kVec], float scale) {
  if constexpr (kVec == 1) {
    p[0] = QuantizeValue(in[0], scale);
  } else {
    char2 codes;
    codes.x = QuantizeValue(in[0], scale);
    codes.y = QuantizeValue(in[1], scale);
    *reinterpret_cast<char2*>(p) = codes;
  }
}

__device__ __forceinline__ float WarpMax(float value) {
  for (int offset = 16; offset > 0; offset /= 2)
    value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

// Lane `lane` of a warp owns the pairs (i, i + half) for i = (lane + 32 u) * kVec + e.
template <int kVec>
__global__ void __launch_bounds__(kThreads) RotaryKvWriteKernel(const RotaryKvWriteArgs args) {
  constexpr int kUnits = kMaxHalf / (32 * kVec);
  __shared__ float cos_table[kMaxHalf];
  __shared__ float sin_table[kMaxHalf];

  const int64_t row = blockIdx.x;
  const int head_dim = args.head_dim;
  const int half = head_dim / 2;
  const float position = static_cast<float>(args.positions[row]);
  for (int i = threadIdx.x; i < half; i += kThreads) {
    const float angle = __fmul_rn(position, args.inv_freq[i]);
    double s, c;
    sincos(static_cast<double>(angle), &s, &c);
    cos_table[i] = static_cast<float>(c);
    sin_table[i] = static_cast<float>(s);
  }
  __syncthreads();

  const int64_t slot = args.slot_mapping[row];
  const bool write_cache = slot >= 0 && slot < args.num_slots;
  const int num_heads = args.num_heads, num_kv_heads = args.num_kv_heads;
  const int total_heads = num_heads + 2 * num_kv_heads;
  const __nv_bfloat16* in_row = args.qkv + row * total_heads * head_dim;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  for (int h = warp; h < total_heads; h += kWarps) {
    const bool is_q = h < num_heads;
    const bool is_v = h >= num_heads + num_kv_heads;
    if (!is_q && !write_cache) continue;  // warp-uniform
    const __nv_bfloat16* x = in_row + static_cast<int64_t>(h) * head_dim;

    float a[kUnits][kVec], b[kUnits][kVec];
#pragma unroll
    for (int u = 0; u < kUnits; ++u) {
      const int i = (lane + 32 * u) * kVec;
      if (i < half) {
        LoadBf16<kVec>(x + i, a[u]);
        LoadBf16<kVec>(x + i + half, b[u]);
        if (!is_v) {
#pragma unroll
          for (int e = 0; e < kVec; ++e) {
            const float c = cos_table[i + e], s = sin_table[i + e];
            // The reference's explicit fused multiply-adds (kernels/cpu/rotary.cc).
            const float lo = __fmaf_rn(a[u][e], c, -__fmul_rn(b[u][e], s));
            const float hi = __fmaf_rn(b[u][e], c, __fmul_rn(a[u][e], s));
            a[u][e] = lo;
            b[u][e] = hi;
          }
        }
      }
    }

    if (is_q) {
      __nv_bfloat16* out = args.q_out + (row * num_heads + h) * head_dim;
#pragma unroll
      for (int u = 0; u < kUnits; ++u) {
        const int i = (lane + 32 * u) * kVec;
        if (i < half) {
          StoreBf16<kVec>(out + i, a[u]);
          StoreBf16<kVec>(out + i + half, b[u]);
        }
      }
      continue;
    }

    const int kv_head = is_v ? h - num_heads - num_kv_heads : h - num_heads;
    const int64_t offset = (slot * num_kv_heads + kv_head) * head_dim;
    if (!args.cache.int8) {
      __nv_bfloat16* out =
          static_cast<__nv_bfloat16*>(is_v ? args.cache.values : args.cache.keys) + offset;
#pragma unroll
      for (int u = 0; u < kUnits; ++u) {
        const int i = (lane + 32 * u) * kVec;
        if (i < half) {
          StoreBf16<kVec>(out + i, a[u]);
          StoreBf16<kVec>(out + i + half, b[u]);
        }
      }
      continue;
    }

    // INT8: max|x| is order-free, so the warp reduction equals the reference's loop.
    float absmax = 0.0f;
#pragma unroll
    for (int u = 0; u < kUnits; ++u) {
      const int i = (lane + 32 * u) * kVec;
      if (i < half) {
#pragma unroll
        for (int e = 0; e < kVec; ++e)
          absmax = fmaxf(absmax, fmaxf(fabsf(a[u][e]), fabsf(b[u][e])));
      }
    }
    absmax = WarpMax(absmax);
    const __half scale_half = __float2half_rn(__fdiv_rn(absmax, 127.0f));
    const float scale = __half2float(scale_half);
    int8_t* codes = static_cast<int8_t*>(is_v ? args.cache.values : args.cache.keys) + offset;
#pragma unroll
    for (int u = 0; u < kUnits; ++u) {
      const int i = (lane + 32 * u) * kVec;
      if (i < half) {
        StoreCodes<kVec>(codes + i, a[u], scale);
        StoreCodes<kVec>(codes + i + half, b[u], scale);
      }
    }
    if (lane == 0) {
      uint16_t* scales = is_v ? args.cache.value_scales : args.cache.key_scales;
      scales[slot * num_kv_heads + kv_head] = __half_as_ushort(scale_half);
    }
  }
}

bool Aligned4(const void* p) { return reinterpret_cast<uintptr_t>(p) % 4 == 0; }

}  // namespace

cudaError_t LaunchRotaryKvWrite(const RotaryKvWriteArgs& args, cudaStream_t stream) {
  if (args.rows == 0) return cudaSuccess;
  const bool pairs = args.head_dim % 4 == 0 && Aligned4(args.qkv) && Aligned4(args.q_out) &&
                     Aligned4(args.cache.keys) && Aligned4(args.cache.values);
  if (pairs) {
    RotaryKvWriteKernel<2><<<args.rows, kThreads, 0, stream>>>(args);
  } else {
    RotaryKvWriteKernel<1><<<args.rows, kThreads, 0, stream>>>(args);
  }
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
