// Prefill W4A8 GEMM (m >= 64): compute-bound, so the design is about feeding the INT8 tensor cores
// (mma.sync m16n8k32 s8) with as little other work per MMA as possible. The kernel itself is the
// shared mma.sync template (w4a8_mma_sync_tile.cuh, where its numerics are spelled out); here it
// runs with 128 x 128 tiles, eight warps of 64 x 32, and a ring of four 128-wide K tiles (112 KiB
// of dynamic shared memory, one block per SM: the int32 sums and the float partials are 128
// registers per thread).
//
// kSimple: one thread per output, a plain loop over K with the same integer and float order:
// slow, obviously right, the reference for the fast kernel and a fallback should it be in doubt.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/w4a8_mma_sync_tile.cuh"
#include "kernels/cuda/w4a8_prefill_gemm_launch.h"

namespace flatfleet::cuda::internal {
namespace {

using w4a8_mma::Finish;
using w4a8_mma::HalfBitsToFloat;
using w4a8_mma::Store;

// 128 x 128 outputs per block (2 x 4 warps), 4 stages, one block per SM.
using PrefillTile = w4a8_mma::Tile<2, 4, 4, 1>;
static_assert(PrefillTile::kSmemBytes == 4 * (128 * 144 + 128 * 80), "112 KiB");

// ---------------------------------------------------------------------------------------------
// The simple kernel: one thread per output.

// Weight n, k - zero in [-15, 15], read straight from the interleaved words: element 8j + i is
// byte i's low nibble (i < 4) or byte i - 4's high nibble (i >= 4) of word j.
__device__ __forceinline__ int32_t CenteredWeight(const W4A8PrefillParams& p, int n, int k,
                                                  int32_t zero) {
  const uint32_t word = p.w_words[static_cast<int64_t>(n) * (p.k / 8) + k / 8];
  const int i = k % 8;
  const int shift = i < 4 ? 8 * i : 8 * (i - 4) + 4;
  const int32_t nibble = static_cast<int32_t>((word >> shift) & 0xfu);
  const int32_t code = p.w_unsigned_nibbles ? nibble - 8 : (nibble ^ 8) - 8;
  return code - zero;
}

template <typename Out>
__global__ void __launch_bounds__(256) W4A8PrefillSimpleKernel(const W4A8PrefillParams p) {
  const int64_t total = static_cast<int64_t>(p.m) * p.n;
  const int groups = p.k / p.group_size;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int m = static_cast<int>(i / p.n), n = static_cast<int>(i % p.n);
    const int8_t* x = p.x_codes + static_cast<int64_t>(m) * p.k;
    float partial = 0.0f;
    for (int g = 0; g < groups; ++g) {
      const int32_t zero =
          p.w_zero_points != nullptr ? p.w_zero_points[static_cast<int64_t>(n) * groups + g] : 0;
      int32_t acc = 0;
      for (int k = g * p.group_size; k < (g + 1) * p.group_size; ++k) {
        acc += static_cast<int32_t>(x[k]) * CenteredWeight(p, n, k, zero);
      }
      if (p.group_accumulators != nullptr) p.group_accumulators[i * groups + g] = acc;
      partial = fmaf(__int2float_rn(acc),
                     HalfBitsToFloat(p.w_scales[static_cast<int64_t>(n) * groups + g]), partial);
    }
    const bool has_add = p.epilogue_add != nullptr;
    const float v = Finish(partial, HalfBitsToFloat(p.x_scales[m]),
                           has_add ? p.epilogue_add[n] : 0.0f, has_add);
    Store(static_cast<Out*>(p.y) + static_cast<int64_t>(m) * p.y_stride + n, v);
  }
}

// ---------------------------------------------------------------------------------------------
// Launch.

template <typename Out>
cudaError_t LaunchForOutput(const W4A8PrefillParams& p, cudaStream_t stream) {
  if (p.variant == W4A8PrefillVariant::kSimple) {
    const int64_t total = static_cast<int64_t>(p.m) * p.n;
    const int64_t blocks = (total + 255) / 256;
    W4A8PrefillSimpleKernel<Out>
        <<<static_cast<unsigned>(blocks < 65536 ? blocks : 65536), 256, 0, stream>>>(p);
    return cudaGetLastError();
  }
  return p.group_sums_below_2_22 ? w4a8_mma::LaunchMmaSync<PrefillTile, Out, true>(p, stream)
                                 : w4a8_mma::LaunchMmaSync<PrefillTile, Out, false>(p, stream);
}

}  // namespace

cudaError_t LaunchW4A8Prefill(const W4A8PrefillParams& p, cudaStream_t stream) {
  if (p.m == 0 || p.n == 0) return cudaSuccess;
  return p.y_is_bf16 ? LaunchForOutput<__nv_bfloat16>(p, stream)
                     : LaunchForOutput<float>(p, stream);
}

}  // namespace flatfleet::cuda::internal
