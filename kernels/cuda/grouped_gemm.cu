// Grouped bf16 GEMM over MoE experts: Yp[rows of e] = Xp[rows of e] W_e^T, the rows of expert e
// being [offsets[e], offsets[e + 1]) as written on the device by the permutation kernel.
//
// Work split: blockIdx.x = the t-th BM-row tile in the concatenation of every expert's
// ceil(rows_e / BM) tiles, blockIdx.y = a BN-wide column tile. The host sizes the x dimension
// with the bound ceil(total / BM) + min(E, total) (each non-empty expert wastes at most one
// partial tile); every block finds its (expert, tile) by walking the offsets (E <= 256 loads
// from L1) and blocks past the last tile exit at once, so empty experts cost nothing. Row tiles
// vary fastest, so the blocks resident together share a few weight column tiles of every
// expert (read from HBM once per wave) while Xp stays in L2; with column tiles fastest each
// wave would instead stream a whole expert's weights for one or two row tiles.
//
// Tensor-core path: both operands are K-contiguous (Xp rows, W rows), exactly mma.sync's
// "row.col" form. Global -> shared by 16-byte cp.async into a ring of STAGES tiles (zero-filled
// past the expert's rows and past k), ldmatrix.x4 fragments, m16n8k16 bf16 MMAs with float32
// accumulators, one rounding at the store. Decode (few rows per expert) uses 16-row tiles, so
// each expert's weights stream from memory once.
#include <cuda_bf16.h>

#include <algorithm>
#include <atomic>

#include "kernels/cuda/grouped_gemm_launch.h"
#include "kernels/cuda/per_device_attribute.h"
#include "kernels/cuda/warp_mma.cuh"

namespace flatfleet::cuda::internal {
namespace {

using bf16 = __nv_bfloat16;

template <int BM_, int BN_, int BK_, int WARPS_M_, int WARPS_N_, int STAGES_>
struct TileConfig {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, WARPS_M = WARPS_M_, WARPS_N = WARPS_N_;
  static constexpr int STAGES = STAGES_;
  static constexpr int kThreads = WARPS_M * WARPS_N * 32;
  static constexpr int kWarpM = BM / WARPS_M, kWarpN = BN / WARPS_N;
  static constexpr int kMTiles = kWarpM / 16, kNTiles = kWarpN / 8;
  // Shared rows padded by 8 elements (16 bytes): the 8 row addresses of an ldmatrix then fall
  // into different banks.
  static constexpr int kStride = BK + 8;
  static constexpr int kAStage = BM * kStride, kBStage = BN * kStride;  // elements
  static constexpr int kSmemBytes = STAGES * (kAStage + kBStage) * 2;
  static_assert(kWarpM % 16 == 0 && kWarpN % 16 == 0, "warp tile: m16 rows, pairs of n8 tiles");
  static_assert(BK % 16 == 0 && STAGES >= 2, "k tile and pipeline depth");
};

// Decode (<= 16 rows per expert): four warps of 16 x 16, 64-deep K tiles (128-byte weight row
// segments) and six stages, 67.5 KiB of shared memory (three blocks per SM). Decode is bound by
// streaming the weights, so each block keeps five tiles (50 KB) in flight: even Mixtral's down
// projection at one token (64 column tiles x 2 experts = 128 blocks, one per SM) then has
// ~6 MB of loads outstanding, above the ~4 MB that 4.8 TB/s x ~1 us of latency needs.
using SmallTiles = TileConfig<16, 64, 64, 1, 4, 6>;
// Small batches (<= 64 rows per expert): four warps of 32 x 64, 60 KiB.
using MediumTiles = TileConfig<64, 128, 32, 2, 2, 4>;
// Prefill: eight warps of 64 x 32, 80 KiB (two blocks per SM).
using LargeTiles = TileConfig<128, 128, 32, 2, 4, 4>;

static_assert(SmallTiles::BN >= kGroupedGemmMinTileColumns &&
                  MediumTiles::BN >= kGroupedGemmMinTileColumns &&
                  LargeTiles::BN >= kGroupedGemmMinTileColumns,
              "the wrapper's grid bound assumes column tiles of at least this width");

__device__ __forceinline__ int ClampInt(int v, int lo, int hi) { return min(max(v, lo), hi); }

// Rows [begin, end) of expert e, clamped into [0, total_rows].
__device__ __forceinline__ void ExpertRows(const GroupedGemmParams& p, int e, int& begin,
                                           int& end) {
  begin = ClampInt(p.expert_offsets[e], 0, p.total_rows);
  end = ClampInt(p.expert_offsets[e + 1], begin, p.total_rows);
}

__device__ __forceinline__ const bf16* ExpertWeight(const GroupedGemmParams& p, int e) {
  return p.weight_pointers != nullptr
             ? p.weight_pointers[e]
             : p.weights + static_cast<int64_t>(e) * p.weight_expert_stride;
}

// The expert and rows [row_begin, row_begin + rows) of row tile `tile`; false past the last.
// Every thread computes the same answer, so the early exit is uniform over the block.
template <int BM>
__device__ bool FindRowTile(const GroupedGemmParams& p, int tile, int& expert, int& row_begin,
                            int& rows) {
  int tiles_before = 0;
  for (int e = 0; e < p.num_experts; ++e) {
    int begin, end;
    ExpertRows(p, e, begin, end);
    const int tiles = (end - begin + BM - 1) / BM;
    if (tile < tiles_before + tiles) {
      expert = e;
      row_begin = begin + (tile - tiles_before) * BM;
      rows = min(BM, end - row_begin);
      return true;
    }
    tiles_before += tiles;
  }
  return false;
}

template <class C>
__device__ __forceinline__ void LoadTile(const GroupedGemmParams& p, const bf16* w, int row_begin,
                                         int rows, int n0, int k0, bf16* a_stage, bf16* b_stage) {
  constexpr int kChunks = C::BK / 8;  // 16-byte chunks per tile row
  for (int i = threadIdx.x; i < C::BM * kChunks; i += C::kThreads) {
    const int r = i / kChunks, c = i % kChunks;
    const int gk = k0 + c * 8;
    const bool valid = r < rows && gk < p.k;
    const bf16* src = valid ? p.xp + static_cast<int64_t>(row_begin + r) * p.k + gk : p.xp;
    CopyAsync16(SharedAddress(a_stage + r * C::kStride + c * 8), src, valid);
  }
  for (int i = threadIdx.x; i < C::BN * kChunks; i += C::kThreads) {
    const int r = i / kChunks, c = i % kChunks;
    const int gn = n0 + r, gk = k0 + c * 8;
    const bool valid = gn < p.n && gk < p.k;
    const bf16* src = valid ? w + static_cast<int64_t>(gn) * p.k + gk : w;
    CopyAsync16(SharedAddress(b_stage + r * C::kStride + c * 8), src, valid);
  }
}

template <class C, bool kFloatOut>
__global__ void __launch_bounds__(C::kThreads)
    GroupedGemmTensorCoreKernel(const GroupedGemmParams p) {
  int expert = 0, row_begin = 0, rows = 0;
  if (!FindRowTile<C::BM>(p, blockIdx.x, expert, row_begin, rows)) return;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  bf16* a_shared = reinterpret_cast<bf16*>(shared_bytes);
  bf16* b_shared = a_shared + C::STAGES * C::kAStage;
  const bf16* w = ExpertWeight(p, expert);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warp_m = warp / C::WARPS_N, warp_n = warp % C::WARPS_N;
  const int n0 = blockIdx.y * C::BN;
  const int k_tiles = (p.k + C::BK - 1) / C::BK;

  float acc[C::kMTiles][C::kNTiles][4];
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[mt][nt][c] = 0.0f;

#pragma unroll
  for (int s = 0; s < C::STAGES - 1; ++s) {
    if (s < k_tiles)
      LoadTile<C>(p, w, row_begin, rows, n0, s * C::BK, a_shared + s * C::kAStage,
                  b_shared + s * C::kBStage);
    CopyAsyncCommit();
  }

  for (int kt = 0; kt < k_tiles; ++kt) {
    CopyAsyncWait<C::STAGES - 2>();
    __syncthreads();  // tile kt has landed for everyone, and everyone is done with tile kt - 1
    const int next = kt + C::STAGES - 1;
    if (next < k_tiles) {
      const int s = next % C::STAGES;
      LoadTile<C>(p, w, row_begin, rows, n0, next * C::BK, a_shared + s * C::kAStage,
                  b_shared + s * C::kBStage);
    }
    CopyAsyncCommit();

    const int stage = kt % C::STAGES;
    const bf16* a_stage = a_shared + stage * C::kAStage;
    const bf16* b_stage = b_shared + stage * C::kBStage;
#pragma unroll
    for (int ks = 0; ks < C::BK / 16; ++ks) {
      // A (m16 x k16): ldmatrix matrices = rows 0-7 / 8-15 x k 0-7, then the same at k 8-15,
      // i.e. a0..a3 of the MMA fragment.
      uint32_t a_frag[C::kMTiles][4];
#pragma unroll
      for (int mt = 0; mt < C::kMTiles; ++mt) {
        const int row = warp_m * C::kWarpM + mt * 16 + lane % 16;
        LoadMatrixX4(SharedAddress(a_stage + row * C::kStride + ks * 16 + (lane / 16) * 8),
                     a_frag[mt]);
      }
      // B (k16 x n8, column g = W row g): one ldmatrix.x4 gives two n8 tiles, matrices =
      // (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15).
      uint32_t b_frag[C::kNTiles][2];
#pragma unroll
      for (int pair = 0; pair < C::kNTiles / 2; ++pair) {
        const int row = warp_n * C::kWarpN + pair * 16 + lane % 8 + (lane / 16) * 8;
        uint32_t r[4];
        LoadMatrixX4(SharedAddress(b_stage + row * C::kStride + ks * 16 + ((lane / 8) % 2) * 8), r);
        b_frag[2 * pair][0] = r[0];
        b_frag[2 * pair][1] = r[1];
        b_frag[2 * pair + 1][0] = r[2];
        b_frag[2 * pair + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
        for (int nt = 0; nt < C::kNTiles; ++nt)
          MmaBf16(acc[mt][nt], a_frag[mt], b_frag[nt][0], b_frag[nt][1]);
    }
  }
  CopyAsyncWait<0>();

  // C fragment: this thread holds rows g and g + 8, columns 2t and 2t + 1 of each m16 x n8 tile.
  const int frag_row = lane / 4, frag_col = (lane % 4) * 2;
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = warp_m * C::kWarpM + mt * 16 + frag_row + h * 8;
        const int col = n0 + warp_n * C::kWarpN + nt * 8 + frag_col;
        if (r >= rows || col >= p.n) continue;
        const float v0 = acc[mt][nt][2 * h], v1 = acc[mt][nt][2 * h + 1];
        const bool has_second = col + 1 < p.n;
        const int64_t out = static_cast<int64_t>(row_begin + r) * p.y_row_stride + col;
        if constexpr (kFloatOut) {
          float* y = static_cast<float*>(p.yp);
          y[out] = v0;
          if (has_second) y[out + 1] = v1;
        } else {
          bf16* y = static_cast<bf16*>(p.yp);
          if (has_second && p.y_row_stride % 2 == 0) {  // out is even: a 4-byte aligned pair
            *reinterpret_cast<__nv_bfloat162*>(y + out) = __floats2bfloat162_rn(v0, v1);
          } else {
            y[out] = __float2bfloat16_rn(v0);
            if (has_second) y[out + 1] = __float2bfloat16_rn(v1);
          }
        }
      }
}

// The reference path: one warp per output element, lanes striding over k, a shuffle tree sum.
constexpr int kSimtWarps = 8;

template <bool kFloatOut>
__global__ void __launch_bounds__(kSimtWarps * 32)
    GroupedGemmSimtKernel(const GroupedGemmParams p) {
  const int row = blockIdx.x;
  int expert = -1;
  for (int e = 0; e < p.num_experts && expert < 0; ++e) {
    int begin, end;
    ExpertRows(p, e, begin, end);
    if (row >= begin && row < end) expert = e;
  }
  const int col = blockIdx.y * kSimtWarps + threadIdx.x / 32;
  if (expert < 0 || col >= p.n) return;  // uniform per warp
  const int lane = threadIdx.x % 32;
  const bf16* x = p.xp + static_cast<int64_t>(row) * p.k;
  const bf16* w = ExpertWeight(p, expert) + static_cast<int64_t>(col) * p.k;
  float sum = 0.0f;
  for (int i = lane; i < p.k; i += 32)
    sum = fmaf(__bfloat162float(x[i]), __bfloat162float(w[i]), sum);
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  if (lane == 0) {
    const int64_t out = static_cast<int64_t>(row) * p.y_row_stride + col;
    if constexpr (kFloatOut) {
      static_cast<float*>(p.yp)[out] = sum;
    } else {
      static_cast<bf16*>(p.yp)[out] = __float2bfloat16_rn(sum);
    }
  }
}

// Opts the kernel into its dynamic shared memory once per device (the attribute is per device).
template <class C, bool kFloatOut>
cudaError_t LaunchTiles(const GroupedGemmParams& p, cudaStream_t stream) {
  static std::atomic<uint64_t> configured_devices{0};
  auto* kernel = GroupedGemmTensorCoreKernel<C, kFloatOut>;
  if (const cudaError_t error =
          SetMaxDynamicSharedMemoryOncePerDevice(configured_devices, kernel, C::kSmemBytes);
      error != cudaSuccess) {
    return error;
  }
  const int64_t row_tiles =
      (p.total_rows + C::BM - 1) / C::BM + std::min<int64_t>(p.num_experts, p.total_rows);
  const int64_t column_tiles = (p.n + C::BN - 1) / C::BN;
  if (row_tiles > 0x7fffffff || column_tiles > 65535) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(row_tiles), static_cast<unsigned>(column_tiles));
  kernel<<<grid, C::kThreads, C::kSmemBytes, stream>>>(p);
  return cudaGetLastError();
}

template <class C>
cudaError_t LaunchForOutput(const GroupedGemmParams& p, cudaStream_t stream) {
  return p.y_float32 ? LaunchTiles<C, true>(p, stream) : LaunchTiles<C, false>(p, stream);
}

}  // namespace

int GroupedGemmTileRows(int64_t max_rows_per_expert) {
  if (max_rows_per_expert <= SmallTiles::BM) return SmallTiles::BM;
  if (max_rows_per_expert <= MediumTiles::BM) return MediumTiles::BM;
  return LargeTiles::BM;
}

cudaError_t LaunchGroupedGemmTensorCore(const GroupedGemmParams& params,
                                        int64_t max_rows_per_expert, cudaStream_t stream) {
  if (params.total_rows <= 0 || params.n <= 0) return cudaSuccess;
  switch (GroupedGemmTileRows(max_rows_per_expert)) {
    case SmallTiles::BM:
      return LaunchForOutput<SmallTiles>(params, stream);
    case MediumTiles::BM:
      return LaunchForOutput<MediumTiles>(params, stream);
    default:
      return LaunchForOutput<LargeTiles>(params, stream);
  }
}

cudaError_t LaunchGroupedGemmSimt(const GroupedGemmParams& params, cudaStream_t stream) {
  if (params.total_rows <= 0 || params.n <= 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(params.total_rows),
                  static_cast<unsigned>((params.n + kSimtWarps - 1) / kSimtWarps));
  if (params.y_float32) {
    GroupedGemmSimtKernel<true><<<grid, kSimtWarps * 32, 0, stream>>>(params);
  } else {
    GroupedGemmSimtKernel<false><<<grid, kSimtWarps * 32, 0, stream>>>(params);
  }
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
