// Decode W4A8 GEMM (m <= 16): memory-bound, so the design is about keeping weight bytes in flight.
//
// Tensor-core kernel. Each warp owns kBlocks blocks of 8 output channels and walks all of K in
// order, so it holds whole outputs: the int32 group sums (mma.sync m16n8k32 s8, activations as
// the A operand with rows >= m zero, weights as B) are folded into float partials in registers in
// ascending group order, exactly as the reference: partial = fmaf(float(acc_g), s_w[n, g],
// partial); y = partial * s_x[r] (then + add[n], one rounding each). No shared memory, no block
// barriers: warps are independent.
//
// Weights stream in windows of 128 K elements: lane (g, t) (g = lane / 4, t = lane % 4) loads the
// 16 bytes of chunk t (K elements 32t .. 32t + 31 of the window) of channel g of a block, with
// ld.global.nc.L1::no_allocate, kBatch windows at a time, the next batch issued before the
// current one is computed. A 4 x 4 word transpose inside each lane quad then gives lane t word t
// of every chunk, so that one MMA covers exactly one 32-element chunk: every MMA stays inside one
// scale group (group sizes are multiples of 32). In an MMA of chunk c (K offset kc), lane t's
// B registers hold K elements kc + 8t + 0..3 (low nibbles) and kc + 8t + 4..7 (high nibbles),
// the A registers the same elements of rows g and g + 8: the MMA's k order is a permutation of
// the chunk's, and integer sums do not depend on order.
//
// Activations (a few KB, shared by all warps) are read with __ldg, mostly from L1. Scales and
// zero points are fetched one group ahead into registers, after an L2 prefetch of the warp's rows
// at the start.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/int4_unpack.h"
#include "kernels/cuda/w4a8_decode_gemm_launch.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kThreads = kWarpsPerBlock * 32;
constexpr int kWindow = 128;  // K elements per lane-quad load: 4 chunks of 32
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ void MmaInt8(int32_t (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 16 bytes read once: not kept in L1 (which holds the activations).
__device__ __forceinline__ uint4 LoadStreaming16(const uint32_t* pointer) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(pointer));
  return v;
}

__device__ __forceinline__ void PrefetchL2(const void* pointer) {
  asm volatile("prefetch.global.L2 [%0];\n" ::"l"(pointer));
}

// Prefetches bytes [begin, end) of global memory into L2, one 32-byte sector per lane step.
__device__ __forceinline__ void PrefetchRangeL2(const void* base, int64_t begin, int64_t end,
                                                int lane) {
  const char* bytes = static_cast<const char*>(base);
  for (int64_t at = (begin & ~int64_t{31}) + 32 * lane; at < end; at += 32 * 32) {
    PrefetchL2(bytes + at);
  }
}

// 4 x 4 transpose of 32-bit words inside each quad of lanes: on return, word i of lane t is the
// word t that lane i held. Two exchange stages: 2 x 2 blocks of words across lanes t ^ 2, then
// within each block across lanes t ^ 1. Every lane executes all four shuffles.
__device__ __forceinline__ void TransposeQuad(uint32_t (&w)[4], int t) {
  const bool upper = (t & 2) != 0;
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    // Lanes 0, 1 send words 2, 3 and lanes 2, 3 send words 0, 1 (the off-diagonal blocks).
    const uint32_t sent = upper ? w[j] : w[2 + j];
    const uint32_t received = __shfl_xor_sync(kFullMask, sent, 2);
    if (upper) {
      w[j] = received;
    } else {
      w[2 + j] = received;
    }
  }
  const bool odd = (t & 1) != 0;
#pragma unroll
  for (int pair = 0; pair < 2; ++pair) {
    // Even lanes send word 2p + 1, odd lanes word 2p (off-diagonal inside the 2 x 2 block).
    const uint32_t sent = odd ? w[2 * pair] : w[2 * pair + 1];
    const uint32_t received = __shfl_xor_sync(kFullMask, sent, 1);
    if (odd) {
      w[2 * pair] = received;
    } else {
      w[2 * pair + 1] = received;
    }
  }
}

__device__ __forceinline__ void StoreOutput(float* y, float v) { *y = v; }
__device__ __forceinline__ void StoreOutput(__nv_bfloat16* y, float v) {
  *y = __float2bfloat16_rn(v);
}

// y = round(partial * x_scale [+ add]): each operation one float32 rounding (never contracted).
template <typename Out>
__device__ __forceinline__ void Finish(const W4A8DecodeParams& p, float partial, float x_scale,
                                       int row, int col) {
  float v = __fmul_rn(partial, x_scale);
  if (p.epilogue_add != nullptr) v = __fadd_rn(v, p.epilogue_add[col]);
  StoreOutput(static_cast<Out*>(p.y) + static_cast<int64_t>(row) * p.y_stride + col, v);
}

// kBlocks blocks of 8 channels per warp; kBatch windows of weights loaded per batch.
template <int kBlocks, int kBatch, typename Out>
__global__ void __launch_bounds__(kThreads) W4A8DecodeTensorCoreKernel(const W4A8DecodeParams p) {
  const int lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int64_t warp = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int64_t n_base = warp * 8 * kBlocks;
  if (n_base >= p.n) return;  // whole warps only; the kernel has no block barrier
  const int k = p.k, group_size = p.group_size;
  const int groups = k / group_size;
  const int64_t words_per_row = k / 8;
  const int windows = (k + kWindow - 1) / kWindow;
  const int batches = (windows + kBatch - 1) / kBatch;
  const uint32_t flip = p.w_unsigned_nibbles ? kUnsignedNibbleFlip : kSignedNibbleFlip;
  const bool has_zero_points = p.w_zero_points != nullptr;

  // The warp's channels [n_base, n_end): their scales (and zero points) are contiguous.
  const int64_t n_end = min(static_cast<int64_t>(p.n), n_base + 8 * kBlocks);
  PrefetchRangeL2(p.w_scales, n_base * groups * 2, n_end * groups * 2, lane);
  if (has_zero_points) PrefetchRangeL2(p.w_zero_points, n_base * groups, n_end * groups, lane);

  // This lane's weight rows (B column g of each block), offset to its chunk t of a window.
  const uint32_t* w_row[kBlocks];
  bool w_row_valid[kBlocks];
#pragma unroll
  for (int b = 0; b < kBlocks; ++b) {
    const int64_t row = n_base + 8 * b + g;
    w_row_valid[b] = row < p.n;
    w_row[b] = p.w_words + (w_row_valid[b] ? row : 0) * words_per_row + 4 * t;
  }
  // This lane's activation rows g and g + 8 (A rows); rows >= m contribute zeros.
  const bool x_valid_lo = g < p.m, x_valid_hi = g + 8 < p.m;
  const int8_t* x_lo = p.x_codes + static_cast<int64_t>(x_valid_lo ? g : 0) * k + 8 * t;
  const int8_t* x_hi = p.x_codes + static_cast<int64_t>(x_valid_hi ? g + 8 : 0) * k + 8 * t;

  auto load_batch = [&](int batch, uint4(&buffer)[kBatch][kBlocks]) {
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int window = batch * kBatch + u;
      // Chunk t of the window exists (k is a multiple of 32, so a chunk is all in or all out).
      const bool chunk_valid = window < windows && window * kWindow + 32 * t < k;
#pragma unroll
      for (int b = 0; b < kBlocks; ++b) {
        buffer[u][b] = chunk_valid && w_row_valid[b]
                           ? LoadStreaming16(w_row[b] + static_cast<int64_t>(window) * 16)
                           : make_uint4(0, 0, 0, 0);
      }
    }
  };

  // Scales of this lane's output columns n_base + 8b + 2t + j and zero points of its B columns
  // n_base + 8b + g, for one group; fetched one group ahead.
  uint16_t scale_next[kBlocks][2];
  int8_t zero_next[kBlocks];
  float scale[kBlocks][2];
  uint32_t zero_plus_8[kBlocks];
  auto fetch_group = [&](int group) {
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int64_t col = n_base + 8 * b + 2 * t + j;
        scale_next[b][j] =
            col < p.n && group < groups ? __ldg(p.w_scales + col * groups + group) : uint16_t{0};
      }
      const int64_t row = n_base + 8 * b + g;
      zero_next[b] = has_zero_points && row < p.n && group < groups
                         ? __ldg(p.w_zero_points + row * groups + group)
                         : int8_t{0};
    }
  };
  fetch_group(0);

  int32_t acc[kBlocks][4];
  float partial[kBlocks][4];
#pragma unroll
  for (int b = 0; b < kBlocks; ++b)
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      acc[b][c] = 0;
      partial[b][c] = 0.0f;
    }

  auto compute_window = [&](int window, const uint4(&loaded)[kBlocks]) {
    // words[b][c]: after the transpose, word t of chunk c of this lane's row of block b.
    uint32_t words[kBlocks][4];
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
      words[b][0] = loaded[b].x;
      words[b][1] = loaded[b].y;
      words[b][2] = loaded[b].z;
      words[b][3] = loaded[b].w;
      TransposeQuad(words[b], t);
    }
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int kc = window * kWindow + 32 * c;
      if (kc >= k) break;  // warp-uniform: the last window may be short
      const int group = kc / group_size;
      if (kc % group_size == 0) {  // the group starts: its prefetched values become current
#pragma unroll
        for (int b = 0; b < kBlocks; ++b) {
#pragma unroll
          for (int j = 0; j < 2; ++j)
            scale[b][j] = __half2float(__ushort_as_half(scale_next[b][j]));
          zero_plus_8[b] = ZeroPlus8x4(zero_next[b]);
        }
        fetch_group(group + 1);
      }
      // A: bytes kc + 8t + 0..3 (a0, a1) and kc + 8t + 4..7 (a2, a3) of rows g (a0, a2) and
      // g + 8 (a1, a3).
      const uint2 lo =
          x_valid_lo ? __ldg(reinterpret_cast<const uint2*>(x_lo + kc)) : make_uint2(0, 0);
      const uint2 hi =
          x_valid_hi ? __ldg(reinterpret_cast<const uint2*>(x_hi + kc)) : make_uint2(0, 0);
      const uint32_t a[4] = {lo.x, hi.x, lo.y, hi.y};
#pragma unroll
      for (int b = 0; b < kBlocks; ++b) {
        const uint32_t b0 = CenteredInt8x4(words[b][c] & 0x0f0f0f0fu, flip, zero_plus_8[b]);
        const uint32_t b1 = CenteredInt8x4((words[b][c] >> 4) & 0x0f0f0f0fu, flip, zero_plus_8[b]);
        MmaInt8(acc[b], a, b0, b1);
      }
      if ((kc + 32) % group_size == 0) {  // the group ends: fold it (reference order)
#pragma unroll
        for (int b = 0; b < kBlocks; ++b)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            partial[b][e] = fmaf(__int2float_rn(acc[b][e]), scale[b][e % 2], partial[b][e]);
            acc[b][e] = 0;
          }
      }
    }
  };

  uint4 current[kBatch][kBlocks], next[kBatch][kBlocks];
  load_batch(0, current);
  for (int batch = 0; batch < batches; ++batch) {
    if (batch + 1 < batches) load_batch(batch + 1, next);  // in flight during the compute below
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int window = batch * kBatch + u;
      if (window < windows) compute_window(window, current[u]);  // warp-uniform
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u)
#pragma unroll
      for (int b = 0; b < kBlocks; ++b) current[u][b] = next[u][b];
  }

  // C fragment: element e is row g + 8 (e / 2), column 2t + e % 2 of the block.
  const float x_scale_lo = x_valid_lo ? __half2float(__ushort_as_half(p.x_scales[g])) : 0.0f;
  const float x_scale_hi = x_valid_hi ? __half2float(__ushort_as_half(p.x_scales[g + 8])) : 0.0f;
#pragma unroll
  for (int b = 0; b < kBlocks; ++b)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = g + 8 * (e / 2);
      const int64_t col = n_base + 8 * b + 2 * t + e % 2;
      if (row < p.m && col < p.n) {
        Finish<Out>(p, partial[b][e], e / 2 == 0 ? x_scale_lo : x_scale_hi, row,
                    static_cast<int>(col));
      }
    }
}

// The reference kernel: one thread per output (row blockIdx.y, column), the reference's loops
// spelled out on the unpacked codes.
template <typename Out>
__global__ void __launch_bounds__(kThreads) W4A8DecodeSimpleKernel(const W4A8DecodeParams p) {
  const int row = blockIdx.y;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (col >= p.n) return;
  const int groups = p.k / p.group_size;
  const uint32_t* w = p.w_words + col * (p.k / 8);
  const int8_t* x = p.x_codes + static_cast<int64_t>(row) * p.k;
  float partial = 0.0f;
  for (int group = 0; group < groups; ++group) {
    const int32_t zero =
        p.w_zero_points != nullptr ? p.w_zero_points[col * groups + group] : int32_t{0};
    int32_t acc = 0;
    for (int kk = group * p.group_size; kk < (group + 1) * p.group_size; ++kk) {
      // Element e of a word: byte e % 4, low nibble for e < 4, high nibble otherwise.
      const int e = kk % 8;
      const int32_t nibble = static_cast<int32_t>((w[kk / 8] >> (8 * (e % 4) + 4 * (e / 4))) & 0xf);
      const int32_t code = p.w_unsigned_nibbles ? nibble - 8 : (nibble ^ 8) - 8;
      acc += static_cast<int32_t>(x[kk]) * (code - zero);
    }
    partial = fmaf(__int2float_rn(acc),
                   __half2float(__ushort_as_half(p.w_scales[col * groups + group])), partial);
  }
  Finish<Out>(p, partial, __half2float(__ushort_as_half(p.x_scales[row])), row,
              static_cast<int>(col));
}

template <int kBlocks, int kBatch, typename Out>
cudaError_t LaunchTensorCore(const W4A8DecodeParams& p, cudaStream_t stream) {
  const int64_t warps = (static_cast<int64_t>(p.n) + 8 * kBlocks - 1) / (8 * kBlocks);
  const int64_t blocks = (warps + kWarpsPerBlock - 1) / kWarpsPerBlock;
  W4A8DecodeTensorCoreKernel<kBlocks, kBatch, Out>
      <<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename Out>
cudaError_t LaunchForOutput(const W4A8DecodeParams& p, cudaStream_t stream) {
  switch (p.variant) {
    case W4A8DecodeVariant::kNarrow:
      return LaunchTensorCore<1, 8, Out>(p, stream);
    case W4A8DecodeVariant::kWide:
      return LaunchTensorCore<2, 4, Out>(p, stream);
    case W4A8DecodeVariant::kSimple: {
      const dim3 grid(static_cast<unsigned>((p.n + kThreads - 1) / kThreads),
                      static_cast<unsigned>(p.m));
      W4A8DecodeSimpleKernel<Out><<<grid, kThreads, 0, stream>>>(p);
      return cudaGetLastError();
    }
  }
  return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t LaunchW4A8Decode(const W4A8DecodeParams& p, cudaStream_t stream) {
  if (p.m <= 0 || p.n <= 0) return cudaSuccess;
  return p.y_is_bf16 ? LaunchForOutput<__nv_bfloat16>(p, stream)
                     : LaunchForOutput<float>(p, stream);
}

}  // namespace flatfleet::cuda::internal
