// The mma.sync W4A8 GEMM kernel, one template over its tile shape, shared by the prefill GEMM
// (w4a8_prefill_gemm.cu: 128 x 128 tiles, 4 stages) and the mid-M GEMM (w4a8_midm_gemm.cu:
// 64-row tiles, deeper rings for weight bandwidth).
//
// Numerics are those of the CPU reference quant::GemmW4A8 and of GemmW4A8 (int8_gemm.cu): every
// output's int32 sum per scale group is exact (integer addition is order-free), and the groups
// are folded in ascending order, partial = fmaf(float(acc_g), s_w[n, g], partial); then
// y = partial * s_x[m] (+ add[n]), one float32 rounding each, then one round-to-nearest-even to
// bf16 when asked. Every block walks all of K for its outputs (no split-K), so the fold order is
// the reference's whatever the tile. No float32 result goes through memory.
//
// Per block: kWarpsM x kWarpsN warps of 64 x 32 outputs each (4 x 4 m16n8k32 MMA tiles: 16 MMAs
// per four A ldmatrix.x4 and eight B word pairs; or 16 or 32 rows, for more warps per block), K in
// tiles of 128 through a ring of kStages cp.async stages. All warps of a block column (kWarpsM of
// them) read the same packed weight tile from shared memory, so weights come from global memory
// once per block. INT4 weights travel packed (half the bytes of INT8) and are unpacked to int8x4
// registers right before the MMA: one shift, one mask-and-flip (lop3), one byte-wise subtraction of
// the zero point and one xor per four weights (int4_unpack.h). Scales and zero points of the next
// group are fetched into registers at the start of the current one, so their loads overlap a whole
// group of MMAs. Blocks are rasterised in groups of 8 tile rows (m fastest inside a group), so
// blocks that share a weight tile run together and share it through L2.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "kernels/cuda/int4_unpack.h"
#include "kernels/cuda/w4a8_prefill_gemm_launch.h"
#include "kernels/cuda/warp_mma.cuh"

namespace flatfleet::cuda::internal::w4a8_mma {

__device__ __forceinline__ void MmaInt8(int32_t (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float HalfBitsToFloat(uint32_t bits) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
}

// y = round(partial * x_scale [+ add]): each operation one float32 rounding (never contracted).
__device__ __forceinline__ float Finish(float partial, float x_scale, float add, bool has_add) {
  const float v = __fmul_rn(partial, x_scale);
  return has_add ? __fadd_rn(v, add) : v;
}

__device__ __forceinline__ void Store(float* y, float v) { *y = v; }
__device__ __forceinline__ void Store(__nv_bfloat16* y, float v) { *y = __float2bfloat16_rn(v); }
__device__ __forceinline__ void StorePair(float* y, float a, float b) {
  *reinterpret_cast<float2*>(y) = make_float2(a, b);
}
__device__ __forceinline__ void StorePair(__nv_bfloat16* y, float a, float b) {
  *reinterpret_cast<__nv_bfloat162*>(y) =
      __floats2bfloat162_rn(a, b);  // .x = a at the lower address
}

// Exact int32 -> float32 without the conversion unit (a quarter or less of the FMA rate, and 64
// conversions per thread per group): the MMAs accumulate onto kMagicBits, the bits of 1.5 * 2^23,
// so for |sum| < 2^22 the int32 result is the bit pattern of the float 1.5 * 2^23 + sum (floats
// in [2^23, 2^24) are the integers), and subtracting 1.5 * 2^23 leaves float(sum) exactly.
constexpr int32_t kMagicBits = 0x4b400000;
constexpr float kMagicFloat = 12582912.0f;  // 1.5 * 2^23

// A block of kWarpsM x kWarpsN warps (kWarpMRows x 32 outputs each: 16, 32 or 64 rows), a ring of
// kStages K tiles of 128, and at least kMinBlocks blocks per SM (__launch_bounds__).
template <int kWarpsMArg, int kWarpsNArg, int kStagesArg, int kMinBlocksArg, int kWarpMRows = 64>
struct Tile {
  static constexpr int kWarpsM = kWarpsMArg, kWarpsN = kWarpsNArg;
  static constexpr int kStages = kStagesArg, kMinBlocks = kMinBlocksArg;
  static constexpr int kWarpM = kWarpMRows, kWarpN = 32;
  static constexpr int kMTiles = kWarpM / 16, kNTiles = kWarpN / 8;  // (1, 2 or 4) x 4 MMA tiles
  static constexpr int kBM = kWarpsM * kWarpM, kBN = kWarpsN * kWarpN, kBK = 128;
  static constexpr int kThreads = kWarpsM * kWarpsN * 32;
  // Rows padded by 16 bytes: the 8 row addresses of an ldmatrix (A: 144-byte rows, banks 4r) and
  // the 8 rows of B words one warp reads together (80-byte rows, banks 20r) fall into different
  // banks.
  static constexpr int kAStride = kBK + 16;
  static constexpr int kBStride = kBK / 2 + 16;
  static constexpr int kAStageBytes = kBM * kAStride;
  static constexpr int kBStageBytes = kBN * kBStride;
  static constexpr int kSmemBytes = kStages * (kAStageBytes + kBStageBytes);
  static constexpr int kRasterGroupM = 8;  // tile rows per rasterisation group
  static_assert(kStages >= 2, "the ring needs two stages");
  static_assert(kWarpM == 16 || kWarpM == 32 || kWarpM == 64, "warp rows");
  static_assert((kBM * kBK / 16) % kThreads == 0 && (kBN * kBK / 32) % kThreads == 0,
                "every thread copies the same number of 16-byte chunks");
  static_assert(kSmemBytes <= 227 * 1024, "dynamic shared memory of one block");
};

// Copies the A tile [m0, m0 + kBM) x [k0, k0 + 128) and the B tile [n0, n0 + kBN) x the same K
// (64 bytes of packed words per row) into one stage. Chunks past m, n or k are zero-filled (k is
// a multiple of 32, so every 16-byte chunk lies wholly inside or outside it).
template <class T>
__device__ __forceinline__ void LoadTile(const W4A8PrefillParams& p, uint8_t* a_stage,
                                         uint8_t* b_stage, int m0, int n0, int k0) {
  constexpr int kAChunksPerRow = T::kBK / 16;  // 8
#pragma unroll
  for (int i = threadIdx.x; i < T::kBM * kAChunksPerRow; i += T::kThreads) {
    const int row = i / kAChunksPerRow, chunk = i % kAChunksPerRow;
    const int gm = m0 + row, gk = k0 + chunk * 16;
    const bool valid = gm < p.m && gk < p.k;
    const int8_t* src = valid ? p.x_codes + static_cast<int64_t>(gm) * p.k + gk : p.x_codes;
    CopyAsync16(SharedAddress(a_stage + row * T::kAStride + chunk * 16), src, valid);
  }
  constexpr int kBChunksPerRow = T::kBK / 32;  // 4 (16 bytes = 32 nibbles each)
  const int64_t w_row_bytes = p.k / 2;
  const auto* w = reinterpret_cast<const uint8_t*>(p.w_words);
#pragma unroll
  for (int i = threadIdx.x; i < T::kBN * kBChunksPerRow; i += T::kThreads) {
    const int row = i / kBChunksPerRow, chunk = i % kBChunksPerRow;
    const int gn = n0 + row;
    const int gb = k0 / 2 + chunk * 16;
    const bool valid = gn < p.n && gb < w_row_bytes;
    const uint8_t* src = valid ? w + static_cast<int64_t>(gn) * w_row_bytes + gb : w;
    CopyAsync16(SharedAddress(b_stage + row * T::kBStride + chunk * 16), src, valid);
  }
}

// kMagic: the group sums are known to stay below 2^22 in magnitude (see W4A8PrefillParams).
template <class T, typename Out, bool kMagic>
__global__ void __launch_bounds__(T::kThreads, T::kMinBlocks)
    W4A8MmaSyncKernel(const W4A8PrefillParams p) {
  constexpr int kBM = T::kBM, kBN = T::kBN, kBK = T::kBK, kStages = T::kStages;
  constexpr int kMTiles = T::kMTiles, kNTiles = T::kNTiles;
  extern __shared__ __align__(16) uint8_t shared[];
  uint8_t* a_shared = shared;
  uint8_t* b_shared = shared + kStages * T::kAStageBytes;

  // Grouped rasterisation: blocks [g * 8 * n_tiles, (g + 1) * 8 * n_tiles) cover tile rows
  // 8g .. 8g + 7 (fewer in the last group), m fastest.
  const int m_tiles = (p.m + kBM - 1) / kBM, n_tiles = (p.n + kBN - 1) / kBN;
  const int linear = blockIdx.x;
  const int per_group = T::kRasterGroupM * n_tiles;
  const int first_m = (linear / per_group) * T::kRasterGroupM;
  const int group_rows = min(m_tiles - first_m, T::kRasterGroupM);
  const int local = linear % per_group;
  const int m0 = (first_m + local % group_rows) * kBM;
  const int n0 = (local / group_rows) * kBN;

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warp_m = warp / T::kWarpsN, warp_n = warp % T::kWarpsN;
  // This thread's place in the MMA fragments: C rows g, g + 8 and columns 2t, 2t + 1; B column g.
  const int frag_row = lane / 4, frag_col = (lane % 4) * 2;
  const int t = lane % 4;
  const int groups = p.k / p.group_size;
  const int steps_per_group = p.group_size / 32;
  const int k_tiles = (p.k + kBK - 1) / kBK;
  const int warp_n0 = n0 + warp_n * T::kWarpN;

  constexpr int32_t kAccStart = kMagic ? kMagicBits : 0;
  int32_t acc[kMTiles][kNTiles][4];
  float partial[kMTiles][kNTiles][4];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        acc[mt][nt][c] = kAccStart;
        partial[mt][nt][c] = 0.0f;
      }

  // Scales of this thread's C columns and zero point of its B column: current group, and the raw
  // bits of the next one (fetched a group ahead).
  float w_scale[kNTiles][2];
  uint32_t scale_next[kNTiles][2];
  uint32_t zero_plus_8[kNTiles];
  int32_t zero_next[kNTiles];
  auto fetch_group = [&](int g) {
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int n = warp_n0 + nt * 8 + frag_col + j;
        scale_next[nt][j] =
            n < p.n && g < groups ? p.w_scales[static_cast<int64_t>(n) * groups + g] : 0u;
      }
      const int n = warp_n0 + nt * 8 + frag_row;
      zero_next[nt] = p.w_zero_points != nullptr && n < p.n && g < groups
                          ? p.w_zero_points[static_cast<int64_t>(n) * groups + g]
                          : 0;
    }
  };
  auto start_group = [&](int g) {
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
#pragma unroll
      for (int j = 0; j < 2; ++j) w_scale[nt][j] = HalfBitsToFloat(scale_next[nt][j]);
      zero_plus_8[nt] = ZeroPlus8x4(zero_next[nt]);
    }
    fetch_group(g + 1);
  };
  // The finished group's int32 sums into the float partials (reference order). They are not
  // stored: the 64 address computations alone made this kernel spill (1.2 KB of stack at 255
  // registers); the simple kernel writes them for tests.
  auto fold_group = [&]() {
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const float sum = kMagic ? __fsub_rn(__int_as_float(acc[mt][nt][c]), kMagicFloat)
                                   : __int2float_rn(acc[mt][nt][c]);
          partial[mt][nt][c] = fmaf(sum, w_scale[nt][c % 2], partial[mt][nt][c]);
          acc[mt][nt][c] = kAccStart;
        }
  };
  fetch_group(0);

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) {
      LoadTile<T>(p, a_shared + s * T::kAStageBytes, b_shared + s * T::kBStageBytes, m0, n0,
                  s * kBK);
    }
    CopyAsyncCommit();
  }

  // Warps of 16 or 32 rows skip MMA row tiles wholly past m (a 17-row problem in a 64-row block
  // tile): no ldmatrix, no MMA, warp-uniform, and their sums stay zero (rows never stored). Tiles
  // mt < live_tiles are the live ones. (64-row warps skip nothing: the branches cost them spills
  // at 255 registers.)
  constexpr bool kSkipDeadTiles = T::kMTiles <= 2;
  const int live_tiles = kSkipDeadTiles ? (p.m - (m0 + warp_m * T::kWarpM) + 15) / 16 : kMTiles;

  const uint32_t flip = p.w_unsigned_nibbles ? kUnsignedNibbleFlip : kSignedNibbleFlip;
  const int nibble_shift = (t % 2) * 4;
  int group = 0, step_in_group = 0;
  for (int kt = 0; kt < k_tiles; ++kt) {
    // Of the kStages - 1 + kt groups committed so far (one per tile), at most kStages - 2 are
    // pending: tile kt has landed.
    CopyAsyncWait<kStages - 2>();
    __syncthreads();  // tile kt has landed for everyone, and everyone is done with tile kt - 1
    const int next = kt + kStages - 1;
    if (next < k_tiles) {
      const int s = next % kStages;
      LoadTile<T>(p, a_shared + s * T::kAStageBytes, b_shared + s * T::kBStageBytes, m0, n0,
                  next * kBK);
    }
    CopyAsyncCommit();

    const int stage = kt % kStages;
    const uint8_t* a_stage = a_shared + stage * T::kAStageBytes;
    const uint8_t* b_stage = b_shared + stage * T::kBStageBytes;
    const int k_steps = min(kBK, p.k - kt * kBK) / 32;  // the last tile may be short
#pragma unroll
    for (int ks = 0; ks < kBK / 32; ++ks) {
      if (ks >= k_steps) break;
      if (step_in_group == 0) start_group(group);
      // A (m16 x k32 each): ldmatrix matrices 0..3 = rows 0-7 / 8-15 x k 0-15 / 16-31.
      uint32_t a_frag[kMTiles][4];
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        if (kSkipDeadTiles && mt >= live_tiles) continue;
        const int row = warp_m * T::kWarpM + mt * 16 + lane % 16;
        LoadMatrixX4(SharedAddress(a_stage + row * T::kAStride + ks * 32 + (lane / 16) * 16),
                     a_frag[mt]);
      }
      // B (k32 x n8): b0 = k 4t..4t+3, b1 = k 16+4t..16+4t+3 of column g. Word j of the step
      // holds k 8j..8j+7 (low nibbles k 8j..8j+3), so thread t takes nibble half t % 2 of words
      // t / 2 (b0) and 2 + t / 2 (b1).
      uint32_t b_frag[kNTiles][2];
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
        const int row = warp_n * T::kWarpN + nt * 8 + frag_row;
        const uint8_t* words = b_stage + row * T::kBStride + ks * 16 + (t / 2) * 4;
        const uint32_t w0 = *reinterpret_cast<const uint32_t*>(words);
        const uint32_t w1 = *reinterpret_cast<const uint32_t*>(words + 8);
        b_frag[nt][0] = CenteredInt8x4((w0 >> nibble_shift) & 0x0f0f0f0fu, flip, zero_plus_8[nt]);
        b_frag[nt][1] = CenteredInt8x4((w1 >> nibble_shift) & 0x0f0f0f0fu, flip, zero_plus_8[nt]);
      }
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        if (kSkipDeadTiles && mt >= live_tiles) continue;
#pragma unroll
        for (int nt = 0; nt < kNTiles; ++nt)
          MmaInt8(acc[mt][nt], a_frag[mt], b_frag[nt][0], b_frag[nt][1]);
      }
      if (++step_in_group == steps_per_group) {
        fold_group();
        ++group;
        step_in_group = 0;
      }
    }
  }
  CopyAsyncWait<0>();

  // Epilogue straight from the registers: y = round(partial * s_x [+ add]).
  const bool has_add = p.epilogue_add != nullptr;
  float x_scale[kMTiles][2];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int m = m0 + warp_m * T::kWarpM + mt * 16 + frag_row + h * 8;
      x_scale[mt][h] = m < p.m ? HalfBitsToFloat(p.x_scales[m]) : 0.0f;
    }
  float add[kNTiles][2];
#pragma unroll
  for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int n = warp_n0 + nt * 8 + frag_col + j;
      add[nt][j] = has_add && n < p.n ? p.epilogue_add[n] : 0.0f;
    }
  Out* y = static_cast<Out*>(p.y);
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int m = m0 + warp_m * T::kWarpM + mt * 16 + frag_row + h * 8;
      if (m >= p.m) continue;
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
        const int n = warp_n0 + nt * 8 + frag_col;  // even
        const float v0 = Finish(partial[mt][nt][2 * h], x_scale[mt][h], add[nt][0], has_add);
        const float v1 = Finish(partial[mt][nt][2 * h + 1], x_scale[mt][h], add[nt][1], has_add);
        Out* at = y + static_cast<int64_t>(m) * p.y_stride + n;
        if (p.y_pairs_aligned && n + 1 < p.n) {
          StorePair(at, v0, v1);
        } else {
          if (n < p.n) Store(at, v0);
          if (n + 1 < p.n) Store(at + 1, v1);
        }
      }
    }
}

// Blocks of one launch: one per kBM x kBN output tile.
template <class T>
int64_t MmaSyncBlocks(int32_t m, int32_t n) {
  return static_cast<int64_t>((m + T::kBM - 1) / T::kBM) *
         static_cast<int64_t>((n + T::kBN - 1) / T::kBN);
}

// Opts `kernel` in to `bytes` of dynamic shared memory on the current device. The attribute applies
// to one kernel on one device: each (device, kernel) pair is set once, under a lock, remembering
// only successes.
inline cudaError_t OptInDynamicSharedMemory(const void* kernel, int bytes) {
  static std::mutex mutex;
  static std::vector<std::pair<int, const void*>> opted_in;
  int device = 0;
  if (const cudaError_t error = cudaGetDevice(&device); error != cudaSuccess) return error;
  std::lock_guard<std::mutex> lock(mutex);
  const std::pair<int, const void*> key(device, kernel);
  if (std::find(opted_in.begin(), opted_in.end(), key) != opted_in.end()) return cudaSuccess;
  const cudaError_t error =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (error == cudaSuccess) opted_in.push_back(key);
  return error;
}

template <class T, typename Out, bool kMagic>
cudaError_t LaunchMmaSync(const W4A8PrefillParams& p, cudaStream_t stream) {
  const void* kernel = reinterpret_cast<const void*>(&W4A8MmaSyncKernel<T, Out, kMagic>);
  if (const cudaError_t error = OptInDynamicSharedMemory(kernel, T::kSmemBytes);
      error != cudaSuccess) {
    return error;
  }
  W4A8MmaSyncKernel<T, Out, kMagic>
      <<<static_cast<unsigned>(MmaSyncBlocks<T>(p.m, p.n)), T::kThreads, T::kSmemBytes, stream>>>(
          p);
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal::w4a8_mma
