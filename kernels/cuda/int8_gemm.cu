// W8A8 and W4A8 GEMMs on the INT8 tensor cores (mma.sync m16n8k32 s8), matching the CPU reference
// (kernels/cpu/quant/quantized_gemm.h) bit for bit:
//   * integer part: the same int32 sums per scale group (integer addition is order-free);
//   * epilogue: each thread owns whole outputs and folds the groups in ascending order,
//     partial = fmaf(float(acc_g), s_w[n, g], partial), then y = partial * s_x[m].
// Y[m, n] = sum_k X[m, k] W[n, k]: both operands are K-contiguous ("TN"), the layout the MMA's
// row.col form reads directly. Tiles move global -> shared with cp.async through a ring of
// STAGES buffers (several tiles in flight); INT4 weights travel packed and are unpacked to
// int8x4 registers right before the MMA (two masks and three byte-wise ops per four values).
#include <cuda_fp16.h>

#include <atomic>
#include <cstdint>

#include "kernels/cuda/int4_unpack.h"
#include "kernels/cuda/int8_kernels_launch.h"
#include "kernels/cuda/per_device_attribute.h"
#include "kernels/cuda/warp_mma.cuh"

namespace flatfleet::cuda::internal {
namespace {

__device__ __forceinline__ void MmaInt8(int32_t (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <int BM_, int BN_, int BK_, int WARPS_M_, int WARPS_N_, int STAGES_, bool kInt4_>
struct TileConfig {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, WARPS_M = WARPS_M_, WARPS_N = WARPS_N_;
  static constexpr int STAGES = STAGES_;
  static constexpr bool kInt4 = kInt4_;
  static constexpr int kThreads = WARPS_M * WARPS_N * 32;
  static constexpr int kWarpM = BM / WARPS_M, kWarpN = BN / WARPS_N;
  static constexpr int kMTiles = kWarpM / 16, kNTiles = kWarpN / 8;
  // Rows padded by 16 bytes: the 8 row addresses of an ldmatrix (or of the INT4 word loads)
  // then fall into different banks.
  static constexpr int kARowBytes = BK, kBRowBytes = kInt4 ? BK / 2 : BK;
  static constexpr int kAStride = kARowBytes + 16, kBStride = kBRowBytes + 16;
  static constexpr int kAStageBytes = BM * kAStride, kBStageBytes = BN * kBStride;
  static constexpr int kSmemBytes = STAGES * (kAStageBytes + kBStageBytes);
  static_assert(BM % (16 * WARPS_M) == 0 && BN % (16 * WARPS_N) == 0, "warp tile shape");
  static_assert(BK % 64 == 0, "k tile");
};

template <class C>
__device__ __forceinline__ void LoadTile(const GemmParams& p, uint8_t* a_stage, uint8_t* b_stage,
                                         int m0, int n0, int k0) {
  constexpr int kAChunks = C::kARowBytes / 16;
#pragma unroll
  for (int i = threadIdx.x; i < C::BM * kAChunks; i += C::kThreads) {
    const int row = i / kAChunks, chunk = i % kAChunks;
    const int gm = m0 + row, gk = k0 + chunk * 16;
    const bool valid = gm < p.m && gk < p.k;
    const int8_t* src = valid ? p.x_codes + static_cast<int64_t>(gm) * p.k + gk : p.x_codes;
    CopyAsync16(SharedAddress(a_stage + row * C::kAStride + chunk * 16), src, valid);
  }
  constexpr int kBChunks = C::kBRowBytes / 16;
  const int64_t b_row_bytes = C::kInt4 ? p.k / 2 : p.k;
  const int b0 = C::kInt4 ? k0 / 2 : k0;
  const auto* w = static_cast<const uint8_t*>(p.w);
#pragma unroll
  for (int i = threadIdx.x; i < C::BN * kBChunks; i += C::kThreads) {
    const int row = i / kBChunks, chunk = i % kBChunks;
    const int gn = n0 + row, gb = b0 + chunk * 16;
    const bool valid = gn < p.n && gb < b_row_bytes;
    const uint8_t* src = valid ? w + gn * b_row_bytes + gb : w;
    CopyAsync16(SharedAddress(b_stage + row * C::kBStride + chunk * 16), src, valid);
  }
}

template <class C>
__global__ void __launch_bounds__(C::kThreads) QuantizedGemmKernel(const GemmParams p) {
  extern __shared__ __align__(16) uint8_t shared[];
  uint8_t* a_shared = shared;
  uint8_t* b_shared = shared + C::STAGES * C::kAStageBytes;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warp_m = warp / C::WARPS_N, warp_n = warp % C::WARPS_N;
  const int m0 = blockIdx.y * C::BM, n0 = blockIdx.x * C::BN;
  const int k_tiles = (p.k + C::BK - 1) / C::BK;
  const int groups = p.k / p.group_size;
  // This thread's rows and columns in the MMA C fragment: rows g, g + 8; columns 2t, 2t + 1.
  const int frag_row = lane / 4, frag_col = (lane % 4) * 2;

  int32_t acc[C::kMTiles][C::kNTiles][4];
  float partial[C::kMTiles][C::kNTiles][4];
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        acc[mt][nt][c] = 0;
        partial[mt][nt][c] = 0.0f;
      }
  // Per-group weight scales and zero points of this thread's columns. They are fetched one group
  // ahead (raw bits in registers) so the global loads overlap a whole group of MMAs instead of
  // stalling the fold (W4A8 at m = 4096 on the H100: 159 -> 193 TOP/s).
  float w_scale[C::kNTiles][2];
  uint16_t w_scale_next[C::kNTiles][2];
  uint32_t zero_plus_8[C::kNTiles];
  int8_t zero_next[C::kNTiles];
  auto fetch_group = [&](int g) {
#pragma unroll
    for (int nt = 0; nt < C::kNTiles; ++nt) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int n = n0 + warp_n * C::kWarpN + nt * 8 + frag_col + j;
        w_scale_next[nt][j] =
            n < p.n && g < groups ? p.w_scales[static_cast<int64_t>(n) * groups + g] : 0;
      }
      const int n = n0 + warp_n * C::kWarpN + nt * 8 + frag_row;  // this thread's B column
      zero_next[nt] = p.w_zero_points != nullptr && n < p.n && g < groups
                          ? p.w_zero_points[static_cast<int64_t>(n) * groups + g]
                          : 0;
    }
  };
  // At the first k step of group g: the prefetched values become current; fetch group g + 1.
  auto start_group = [&](int g) {
#pragma unroll
    for (int nt = 0; nt < C::kNTiles; ++nt) {
#pragma unroll
      for (int j = 0; j < 2; ++j)
        w_scale[nt][j] = __half2float(__ushort_as_half(w_scale_next[nt][j]));
      zero_plus_8[nt] = ZeroPlus8x4(zero_next[nt]);
    }
    fetch_group(g + 1);
  };
  fetch_group(0);

  // Folds the finished group's int32 sums into the float partials (reference order) and
  // optionally stores them.
  auto fold_group = [&](int g) {
#pragma unroll
    for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
      for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          partial[mt][nt][c] =
              fmaf(__int2float_rn(acc[mt][nt][c]), w_scale[nt][c % 2], partial[mt][nt][c]);
          if (p.accumulators != nullptr) {
            const int m = m0 + warp_m * C::kWarpM + mt * 16 + frag_row + (c / 2) * 8;
            const int n = n0 + warp_n * C::kWarpN + nt * 8 + frag_col + c % 2;
            if (m < p.m && n < p.n)
              p.accumulators[(static_cast<int64_t>(m) * p.n + n) * groups + g] = acc[mt][nt][c];
          }
          acc[mt][nt][c] = 0;
        }
  };

#pragma unroll
  for (int s = 0; s < C::STAGES - 1; ++s) {
    if (s < k_tiles)
      LoadTile<C>(p, a_shared + s * C::kAStageBytes, b_shared + s * C::kBStageBytes, m0, n0,
                  s * C::BK);
    CopyAsyncCommit();
  }

  for (int kt = 0; kt < k_tiles; ++kt) {
    CopyAsyncWait<C::STAGES - 2>();
    __syncthreads();  // tile kt has landed for everyone, and everyone is done with tile kt - 1
    const int next = kt + C::STAGES - 1;
    if (next < k_tiles) {
      const int s = next % C::STAGES;
      LoadTile<C>(p, a_shared + s * C::kAStageBytes, b_shared + s * C::kBStageBytes, m0, n0,
                  next * C::BK);
    }
    CopyAsyncCommit();

    const int stage = kt % C::STAGES;
    const uint8_t* a_stage = a_shared + stage * C::kAStageBytes;
    const uint8_t* b_stage = b_shared + stage * C::kBStageBytes;
    const int k0 = kt * C::BK;
    const int k_steps = min(C::BK, p.k - k0 + 31) / 32;  // the last tile may be short
#pragma unroll
    for (int ks = 0; ks < C::BK / 32; ++ks) {
      if (ks >= k_steps) break;
      const int k_abs = k0 + ks * 32;
      if constexpr (C::kInt4) {
        if (k_abs % p.group_size == 0) start_group(k_abs / p.group_size);
      }
      // A fragments (m16 x k32 each): ldmatrix matrices 0..3 = rows 0-7 / 8-15 x k 0-15 / 16-31.
      uint32_t a_frag[C::kMTiles][4];
#pragma unroll
      for (int mt = 0; mt < C::kMTiles; ++mt) {
        const int row = warp_m * C::kWarpM + mt * 16 + lane % 16;
        LoadMatrixX4(SharedAddress(a_stage + row * C::kAStride + ks * 32 + (lane / 16) * 16),
                     a_frag[mt]);
      }
      // B fragments (k32 x n8): b0 = k 4t..4t+3, b1 = k 16+4t..16+4t+3, column g of the tile.
      uint32_t b_frag[C::kNTiles][2];
      if constexpr (C::kInt4) {
        // Word j of a 32-element step holds k 8j..8j+7 (low nibbles k 8j..8j+3), so thread t
        // takes nibble half t % 2 of words t / 2 (for b0) and 2 + t / 2 (for b1).
        const int t = lane % 4;
        const int shift = (t % 2) * 4;
        const uint32_t flip = p.w_unsigned_nibbles ? kUnsignedNibbleFlip : kSignedNibbleFlip;
#pragma unroll
        for (int nt = 0; nt < C::kNTiles; ++nt) {
          const int row = warp_n * C::kWarpN + nt * 8 + frag_row;
          const uint8_t* words = b_stage + row * C::kBStride + ks * 16 + (t / 2) * 4;
          const uint32_t w0 = *reinterpret_cast<const uint32_t*>(words);
          const uint32_t w1 = *reinterpret_cast<const uint32_t*>(words + 8);
          b_frag[nt][0] = CenteredInt8x4((w0 >> shift) & 0x0f0f0f0fu, flip, zero_plus_8[nt]);
          b_frag[nt][1] = CenteredInt8x4((w1 >> shift) & 0x0f0f0f0fu, flip, zero_plus_8[nt]);
        }
      } else {
        // One ldmatrix.x4 gives two n8 tiles: matrices = (n 0-7, k 0-15), (n 0-7, k 16-31),
        // (n 8-15, k 0-15), (n 8-15, k 16-31).
#pragma unroll
        for (int pair = 0; pair < C::kNTiles / 2; ++pair) {
          const int row = warp_n * C::kWarpN + pair * 16 + lane % 8 + (lane / 16) * 8;
          uint32_t r[4];
          LoadMatrixX4(SharedAddress(b_stage + row * C::kBStride + ks * 32 + ((lane / 8) % 2) * 16),
                       r);
          b_frag[2 * pair][0] = r[0];
          b_frag[2 * pair][1] = r[1];
          b_frag[2 * pair + 1][0] = r[2];
          b_frag[2 * pair + 1][1] = r[3];
        }
      }
#pragma unroll
      for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
        for (int nt = 0; nt < C::kNTiles; ++nt)
          MmaInt8(acc[mt][nt], a_frag[mt], b_frag[nt][0], b_frag[nt][1]);
      if constexpr (C::kInt4) {
        if ((k_abs + 32) % p.group_size == 0) fold_group(k_abs / p.group_size);
      }
    }
  }
  CopyAsyncWait<0>();
  if constexpr (!C::kInt4) {  // W8A8: one group spanning K
    start_group(0);
    fold_group(0);
  }

  float x_scale[C::kMTiles][2];
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int m = m0 + warp_m * C::kWarpM + mt * 16 + frag_row + h * 8;
      x_scale[mt][h] = m < p.m ? __half2float(__ushort_as_half(p.x_scales[m])) : 0.0f;
    }
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int m = m0 + warp_m * C::kWarpM + mt * 16 + frag_row + (c / 2) * 8;
        const int n = n0 + warp_n * C::kWarpN + nt * 8 + frag_col + c % 2;
        if (m < p.m && n < p.n)
          p.y[static_cast<int64_t>(m) * p.n + n] =
              __fmul_rn(partial[mt][nt][c], x_scale[mt][c / 2]);
      }
}

template <class C>
cudaError_t Launch(const GemmParams& p, cudaStream_t stream) {
  // The opt-in is per device: a process driving two GPUs sets it on each.
  static std::atomic<uint64_t> configured_devices{0};
  const cudaError_t attribute_status = SetMaxDynamicSharedMemoryOncePerDevice(
      configured_devices, QuantizedGemmKernel<C>, C::kSmemBytes);
  if (attribute_status != cudaSuccess) return attribute_status;
  const dim3 grid((p.n + C::BN - 1) / C::BN, (p.m + C::BM - 1) / C::BM);
  QuantizedGemmKernel<C><<<grid, C::kThreads, C::kSmemBytes, stream>>>(p);
  return cudaGetLastError();
}

// Decode (m <= 16): one m16 row of tiles, 64-wide N tiles (four warps of 16 x 16) and deep K
// tiles. Measured on the H100 against 32-wide tiles of two warps with K tiles of 512 (more
// blocks, fewer warps each): those lost on W4A8 (65 -> 83 us at N = K = 8192; the unpack is
// issue-bound, so warps per SM matter more than bytes in flight) and on wide W8A8 layers.
template <bool kInt4>
using DecodeTiles = TileConfig<16, 64, 256, 1, 4, 4, kInt4>;
// Small batches (m <= 256): 64 x 64 tiles, four warps of 32 x 32.
template <bool kInt4>
using MediumTiles = TileConfig<64, 64, 128, 2, 2, 4, kInt4>;
// Prefill, W8A8: 128 x 128 tiles, eight warps of 64 x 32 (110 registers, two blocks per SM).
// W4A8 keeps the medium tiles for large m: it holds float partials next to the int32 sums, and
// 64 x 32 warp tiles spilled (255 registers plus 832 bytes of stack).
using LargeTilesW8A8 = TileConfig<128, 128, 128, 2, 4, 3, false>;

template <bool kInt4>
cudaError_t LaunchForShape(const GemmParams& p, cudaStream_t stream) {
  if (p.m == 0 || p.n == 0) return cudaSuccess;
  if (p.m <= 16) return Launch<DecodeTiles<kInt4>>(p, stream);
  if (kInt4 || p.m <= 256) return Launch<MediumTiles<kInt4>>(p, stream);
  return Launch<LargeTilesW8A8>(p, stream);
}

}  // namespace

cudaError_t LaunchGemmW8A8(const GemmParams& p, cudaStream_t stream) {
  return LaunchForShape<false>(p, stream);
}

cudaError_t LaunchGemmW4A8(const GemmParams& p, cudaStream_t stream) {
  return LaunchForShape<true>(p, stream);
}

}  // namespace flatfleet::cuda::internal
