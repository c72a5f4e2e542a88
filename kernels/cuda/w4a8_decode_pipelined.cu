// The pipelined decode W4A8 kernel (W4A8DecodeKernel::kPipelined): the numerics of the kernels of
// w4a8_decode_gemm.cu (exact int32 window sums, folded per group in ascending K order as the
// reference does: partial = fmaf(float(group_sum), s_w[n, g], partial); y = partial * s_x[r]
// (+ add[n]), one rounding each), restructured to stream the INT4 weights near HBM bandwidth.
//
// Why the earlier kernels stream at 0.3-2 TB/s (bench/RESULTS.md), read from their code:
//  * narrow / wide / split-K: lane (g, t) loads 16 bytes of channel g, so one warp load covers 8
//    rows x 64 bytes; a warp owns 8 channels over all of K, so at n = 4096 there are ~4 warps per
//    SM, each a long dependent chain per 128-element window (wait, unpack, 4 MMAs in one or two
//    accumulator chains, the fold). The activations are the MMA's A operand (16 rows for m = 1:
//    15/16 of each MMA is padding) and are re-read from L1/L2 by every warp, 32 bytes per lane per
//    window against 16 bytes of weights, and the ring kernel issues them right before use (an
//    L1/L2 latency in every window's chain). The split-K kernel adds a CTA barrier per window.
//  * streaming: the loads go to registers, double-buffered one stage deep (16 KB per CTA): when
//    a stage has landed nothing more is issued until its MMAs, the stage barrier and the serial
//    32-window fold are done, so the bytes in flight fall to zero once per stage; its 256-thread
//    CTAs fill an 8-channel table of every group's scales at start (a latency before the first
//    MMA), and m > 8 drops it to 2 CTAs per SM.
//
// This kernel (128 threads, one CTA per tile of 16 * kBlocks output channels, all of K):
//  * Weights: a ring of kStages stages in shared memory filled with cp.async (16 bytes per
//    thread, a warp copying 512 contiguous bytes: two channel rows of 256 bytes), kStages - 1
//    stages in flight per CTA at all times (28 KB for 16 channels, 40 KB for 32; 2-4 CTAs per SM:
//    56-120 KB per SM). A stage is 512 K elements (4 windows of 128) of every channel of the tile.
//    Rows are stored with their 16-byte units xor-swizzled by the row's parity, so the
//    fragment reads below are free of bank conflicts.
//  * MMA with the weights as the A operand (16 channels) and the activation tokens as B (8 per
//    MMA; a second MMA for tokens 8..15 when m > 8): half the MMAs of the old kernels at m <= 8,
//    and 8 activation bytes per lane per MMA. Warp w takes window w of each stage. Lane (g, t)
//    reads 16 bytes (words 4t .. 4t + 3 of the window, K elements 32t .. 32t + 31) of channels g
//    and g + 8 of each 16-channel block; MMA s takes word s of both: A = low nibbles (elements
//    32t + 8s + 0..3, logical k 4t..4t+3) and high nibbles (32t + 8s + 4..7, logical k
//    16+4t..16+4t+3), B = the same activation bytes of token g (bytes 8s .. 8s + 7 of the lane's
//    32). A window lies in one group (group_size % 128 == 0), so the permutation of K inside it
//    leaves the exact int32 sum unchanged. Unpack: mask / shift, xor with the nibble flip,
//    subtract zero + 8, xor 0x80 per 4 bytes (int4_unpack.h; no borrow crosses bytes).
//  * Exchange and fold: each warp writes its window's exact int32 sums to shared memory
//    (double-buffered by stage parity); after the next stage's barrier every thread folds one C
//    element of each 16 x 8 tile over the stage's 4 windows in ascending K order and multiplies
//    in the scale when a window ends its group. One barrier per stage (see the loop).
//  * Scales and zero points of the groups a stage touches (at most 4: windows lie in one group)
//    go through a 4-slot shared table, loaded by one thread per entry one iteration ahead.
//  * Activations (m x k bytes, shared by every CTA) through L1, one stage ahead in registers.
// No workspace and no atomics: the result does not depend on the schedule.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <mutex>
#include <vector>

#include "kernels/cuda/decode_gemm_device.cuh"
#include "kernels/cuda/int4_unpack.h"
#include "kernels/cuda/w4a8_decode_gemm_launch.h"

namespace flatfleet::cuda::internal {
namespace {

using namespace decode_gemm;  // NOLINT: the shared device helpers

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kWindow = 128;                      // K elements: 16 words per channel
constexpr int kStageWindows = kWarps;             // one window per warp per stage
constexpr int kStageK = kStageWindows * kWindow;  // 512 K elements
constexpr int kRowBytes = kStageK / 2;            // 256 bytes of one channel per stage
constexpr int kUnitsPerRow = kRowBytes / 16;      // 16-byte cp.async units
constexpr int kTableSlots = 4;                    // stages of scales / zero points held
constexpr int kGroupsPerStage = kStageWindows;    // at most (every window in one group)
constexpr uint32_t kNibbleMask = 0x0f0f0f0fu;

template <int kBlocks, bool kHighRows>
struct Layout {
  static constexpr int kChannels = 16 * kBlocks;
  static constexpr int kStages = kBlocks == 1 ? 8 : 6;
  static constexpr int kSets = kHighRows ? 2 : 1;  // 8-token MMA column sets
  static constexpr int kTiles = kBlocks * kSets;   // 16 x 8 C tiles per warp and window
  static constexpr int kStageBytes = kChannels * kRowBytes;
  static constexpr int kRingBytes = kStages * kStageBytes;
  static constexpr int kExchangeBytes = 2 * kStageWindows * kTiles * 32 * 16;
  static constexpr int kEntries = kChannels * kGroupsPerStage;  // per table slot
  static constexpr int kScaleBytes = kTableSlots * kEntries * 2;
  static constexpr int kZeroBytes = kTableSlots * kEntries;
  static constexpr int kBytes = kRingBytes + kExchangeBytes + kScaleBytes + kZeroBytes;
  static constexpr int kUnitsPerThread = kChannels * kUnitsPerRow / kThreads;
  // One accumulator chain per tile; a single tile (16 channels, m <= 8) splits its 4 MMAs of a
  // window over two chains.
  static constexpr int kChains = kTiles >= 2 ? 1 : 2;
  static constexpr int kMinBlocksPerSm = kBlocks == 1 ? 4 : 3;
  static_assert(kEntries <= kThreads, "one loader thread per table entry");
  static_assert(kChannels * kUnitsPerRow % kThreads == 0, "whole copy units per thread");
  static_assert(kRingBytes % 16 == 0 && kExchangeBytes % 16 == 0, "16-byte aligned regions");
};

// Byte offset of 16-byte unit `unit` of channel row `row` in a stage: the unit index is xor-ed
// with 4 on odd rows, so the 8 lanes of a quarter-warp reading rows 2i, 2i + 1 at units
// 4w + t (t = 0..3) hit 8 distinct 16-byte bank groups.
__device__ __forceinline__ int StageOffset(int row, int unit) {
  return row * kRowBytes + ((unit ^ ((row & 1) << 2)) * 16);
}

template <int kBlocks, bool kHighRows, typename Out>
__global__ void __launch_bounds__(kThreads, (Layout<kBlocks, kHighRows>::kMinBlocksPerSm))
    W4A8DecodePipelinedKernel(const W4A8DecodeParams p) {
  using L = Layout<kBlocks, kHighRows>;
  constexpr int kSets = L::kSets;
  extern __shared__ __align__(16) unsigned char shared[];
  const uint32_t ring = SharedAddress(shared);
  int4* const exchange = reinterpret_cast<int4*>(shared + L::kRingBytes);
  uint16_t* const scale_table =
      reinterpret_cast<uint16_t*>(shared + L::kRingBytes + L::kExchangeBytes);
  int8_t* const zero_table =
      reinterpret_cast<int8_t*>(shared + L::kRingBytes + L::kExchangeBytes + L::kScaleBytes);

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int g = lane / 4, t = lane % 4;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * L::kChannels;  // < n: the grid
  const int k = p.k, group_size = p.group_size;
  const int groups = k / group_size;
  const int windows = k / kWindow;  // group_size % 128 == 0, so k % 128 == 0
  const int windows_per_group = group_size / kWindow;
  const int stages = (windows + kStageWindows - 1) / kStageWindows;
  const int64_t words_per_row = k / 8;
  const uint32_t flip = p.w_unsigned_nibbles ? kUnsignedNibbleFlip : kSignedNibbleFlip;
  const bool has_zero_points = p.w_zero_points != nullptr;

  // Stage `stage` into its ring slot: unit u = i * 128 + tid is unit u % 16 of row u / 16, so a
  // warp copies rows 2j, 2j + 1 whole. Zeros (nothing read) past the last window or past n. One
  // commit group per call, also when empty, so that commit group i is always stage i.
  auto issue_stage = [&](int stage) {
    const uint32_t base = ring + (stage % L::kStages) * L::kStageBytes;
#pragma unroll
    for (int i = 0; i < L::kUnitsPerThread; ++i) {
      const int u = i * kThreads + tid;
      const int row = u / kUnitsPerRow, unit = u % kUnitsPerRow;
      const int window = stage * kStageWindows + unit / 4;
      const bool valid = window < windows && n0 + row < p.n;
      const uint32_t* source = valid ? p.w_words + (n0 + row) * words_per_row +
                                           static_cast<int64_t>(stage) * (kStageK / 8) + 4 * unit
                                     : p.w_words;
      CopyAsync16(base + StageOffset(row, unit), source, valid);
    }
    CopyAsyncCommit();
  };

  // The first group stage `stage` touches; its windows lie in groups first .. first + 3.
  auto first_group = [&](int stage) {
    return static_cast<int>(static_cast<int64_t>(stage) * kStageK / group_size);
  };
  // Table entry tid (< kEntries): channel tid / 4 of the tile, group first_group(stage) + tid % 4.
  const bool loader = tid < L::kEntries;
  const int entry_channel = tid / kGroupsPerStage;
  auto load_entry = [&](int stage, uint32_t& scale, uint32_t& zero) {
    const int group = first_group(stage) + tid % kGroupsPerStage;
    const bool valid = loader && stage < stages && group < groups && n0 + entry_channel < p.n;
    const int64_t at = (n0 + entry_channel) * groups + group;
    scale = valid ? LoadU16(p.w_scales + at) : 0u;
    zero = valid && has_zero_points ? LoadU8(p.w_zero_points + at) : 0u;
  };
  auto store_entry = [&](int stage, uint32_t scale, uint32_t zero) {
    if (loader) {
      const int at = (stage % kTableSlots) * L::kEntries + tid;
      scale_table[at] = static_cast<uint16_t>(scale);
      zero_table[at] = static_cast<int8_t>(static_cast<uint8_t>(zero));
    }
  };

  // Activation tokens g (set 0) and g + 8 (set 1) at byte 32t of a window (token 0 stands in for
  // tokens >= m, which are never read).
  const int8_t* x_row[kSets];
  bool x_valid[kSets];
#pragma unroll
  for (int set = 0; set < kSets; ++set) {
    const int token = 8 * set + g;
    x_valid[set] = token < p.m;
    x_row[set] = p.x_codes + static_cast<int64_t>(x_valid[set] ? token : 0) * k + 32 * t;
  }
  // Bytes 32t .. 32t + 31 of this warp's window of `stage` (zeros past the last window).
  auto load_activations = [&](int stage, uint32_t(&v)[kSets][8]) {
    const int window = stage * kStageWindows + warp;
    const bool valid = window < windows;
    const int64_t kw = valid ? static_cast<int64_t>(window) * kWindow : 0;
#pragma unroll
    for (int set = 0; set < kSets; ++set)
      LoadActivation32(valid && x_valid[set], x_row[set] + kw, v[set]);
  };

  // Warp `warp`'s window of `stage`: its exact int32 sums, tile (block b, set) at
  // exchange[stage & 1][warp][b * kSets + set][lane].
  auto compute_stage = [&](int stage, const uint32_t(&act)[kSets][8]) {
    const int window = stage * kStageWindows + warp;
    if (window >= windows) return;  // warp-uniform; the fold skips it too
    const uint32_t base = ring + (stage % L::kStages) * L::kStageBytes;
    const int unit = 4 * warp + t;
    const int entry_group = window / windows_per_group - first_group(stage);  // 0..3
    const int table = (stage % kTableSlots) * L::kEntries;
    int32_t acc[L::kChains][kBlocks][kSets][4];
#pragma unroll
    for (int c = 0; c < L::kChains; ++c)
#pragma unroll
      for (int b = 0; b < kBlocks; ++b)
#pragma unroll
        for (int set = 0; set < kSets; ++set)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[c][b][set][e] = 0;
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
      const int row_lo = 16 * b + g, row_hi = row_lo + 8;
      const uint4 lo = LoadShared16(base + StageOffset(row_lo, unit));
      const uint4 hi = LoadShared16(base + StageOffset(row_hi, unit));
      const uint32_t words_lo[4] = {lo.x, lo.y, lo.z, lo.w};
      const uint32_t words_hi[4] = {hi.x, hi.y, hi.z, hi.w};
      uint32_t zero_lo = ZeroPlus8x4(0), zero_hi = ZeroPlus8x4(0);
      if (has_zero_points) {
        zero_lo = ZeroPlus8x4(zero_table[table + row_lo * kGroupsPerStage + entry_group]);
        zero_hi = ZeroPlus8x4(zero_table[table + row_hi * kGroupsPerStage + entry_group]);
      }
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        // A rows g (a0, a2) and g + 8 (a1, a3): logical k 4t..4t+3 (low nibbles) and
        // 16+4t..16+4t+3 (high nibbles) of word s.
        const uint32_t a[4] = {CenteredInt8x4(words_lo[s] & kNibbleMask, flip, zero_lo),
                               CenteredInt8x4(words_hi[s] & kNibbleMask, flip, zero_hi),
                               CenteredInt8x4((words_lo[s] >> 4) & kNibbleMask, flip, zero_lo),
                               CenteredInt8x4((words_hi[s] >> 4) & kNibbleMask, flip, zero_hi)};
#pragma unroll
        for (int set = 0; set < kSets; ++set) {
          MmaInt8(acc[s % L::kChains][b][set], a, act[set][2 * s], act[set][2 * s + 1]);
        }
      }
    }
    int4* const out = exchange + ((stage & 1) * kStageWindows + warp) * L::kTiles * 32;
#pragma unroll
    for (int b = 0; b < kBlocks; ++b)
#pragma unroll
      for (int set = 0; set < kSets; ++set) {
        int32_t sum[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          sum[e] = acc[0][b][set][e];
#pragma unroll
          for (int c = 1; c < L::kChains; ++c) sum[e] += acc[c][b][set][e];  // exact
        }
        out[(b * kSets + set) * 32 + lane] = make_int4(sum[0], sum[1], sum[2], sum[3]);
      }
  };

  // Thread tid folds C element e = tid % 4 of lane tid / 4 of every tile: A row (channel in the
  // block) lane / 4 + 8 (e / 2), B column (token in the set) 2 (lane % 4) + e % 2. Viewed as
  // int32, the element is at tile * 128 + tid of a window's exchange (consecutive threads,
  // consecutive words).
  const int fold_lane = tid / 4, fold_e = tid % 4;
  const int fold_channel = fold_lane / 4 + 8 * (fold_e / 2);
  const int fold_token = 2 * (fold_lane % 4) + fold_e % 2;
  int32_t group_sum[kBlocks][kSets];
  float partial[kBlocks][kSets];
#pragma unroll
  for (int b = 0; b < kBlocks; ++b)
#pragma unroll
    for (int set = 0; set < kSets; ++set) {
      group_sum[b][set] = 0;
      partial[b][set] = 0.0f;
    }
  int fold_window_in_group = 0, fold_group = 0;
  auto fold_stage = [&](int stage) {
    const int32_t* sums =
        reinterpret_cast<const int32_t*>(exchange + (stage & 1) * kStageWindows * L::kTiles * 32);
    const int table = (stage % kTableSlots) * L::kEntries;
    const int first = first_group(stage);
#pragma unroll
    for (int w = 0; w < kStageWindows; ++w) {
      if (stage * kStageWindows + w >= windows) break;  // CTA-uniform: the last stage is short
#pragma unroll
      for (int b = 0; b < kBlocks; ++b)
#pragma unroll
        for (int set = 0; set < kSets; ++set) {
          group_sum[b][set] += sums[(w * L::kTiles + b * kSets + set) * 128 + tid];
        }
      if (++fold_window_in_group == windows_per_group) {  // the window ends its group
        fold_window_in_group = 0;
        const int entry_group = fold_group - first;  // 0..3
#pragma unroll
        for (int b = 0; b < kBlocks; ++b) {
          const float scale = HalfBitsToFloat(
              scale_table[table + (16 * b + fold_channel) * kGroupsPerStage + entry_group]);
#pragma unroll
          for (int set = 0; set < kSets; ++set) {
            partial[b][set] = fmaf(__int2float_rn(group_sum[b][set]), scale, partial[b][set]);
            group_sum[b][set] = 0;
          }
        }
        ++fold_group;
      }
    }
  };

  // Prologue: stages 0 .. kStages - 2 in flight (commit groups 0 .. kStages - 2); the tables of
  // stages 0 and 1 written, stage 2's loaded; stage 0's activations.
#pragma unroll
  for (int s = 0; s < L::kStages - 1; ++s) issue_stage(s);
  {
    uint32_t scale0, zero0, scale1, zero1;
    load_entry(0, scale0, zero0);
    load_entry(1, scale1, zero1);
    store_entry(0, scale0, zero0);
    store_entry(1, scale1, zero1);
  }
  uint32_t pending_scale, pending_zero;
  load_entry(2, pending_scale, pending_zero);
  uint32_t act[kSets][8];
  load_activations(0, act);

  // One barrier per stage. At barrier `stage`: every thread's copies of this stage have landed
  // (wait_group: kStages - 1 + stage committed, at most kStages - 2 pending), and every thread
  // has finished iteration stage - 1: its MMAs on ring slot (stage - 1) % kStages (refilled
  // next), its fold of stage - 2 (which read exchange buffer stage & 1 and table slot
  // (stage + 2) % 4, rewritten in this iteration) and its writes of stage - 1's sums (folded
  // in this iteration).
  for (int stage = 0; stage < stages; ++stage) {
    CopyAsyncWait<L::kStages - 2>();
    __syncthreads();
    issue_stage(stage + L::kStages - 1);
    if (stage > 0) fold_stage(stage - 1);
    store_entry(stage + 2, pending_scale, pending_zero);
    load_entry(stage + 3, pending_scale, pending_zero);
    uint32_t next[kSets][8];
    load_activations(stage + 1, next);  // in flight during the MMAs below
    compute_stage(stage, act);
#pragma unroll
    for (int set = 0; set < kSets; ++set)
#pragma unroll
      for (int i = 0; i < 8; ++i) act[set][i] = next[set][i];
  }
  __syncthreads();  // the last stage's sums
  fold_stage(stages - 1);
  CopyAsyncWait<0>();  // nothing left in flight at exit (the tail's copies are zero fills)

#pragma unroll
  for (int b = 0; b < kBlocks; ++b)
#pragma unroll
    for (int set = 0; set < kSets; ++set) {
      const int token = 8 * set + fold_token;
      const int64_t col = n0 + 16 * b + fold_channel;
      if (token < p.m && col < p.n) {
        Finish<Out>(p, partial[b][set], HalfBitsToFloat(p.x_scales[token]), token,
                    static_cast<int>(col));
      }
    }
}

// The dynamic shared memory above 48 KB: cudaFuncSetAttribute applies to one kernel on the
// current device, so each instantiation opts in once per device, under a lock, remembering only
// successes (as w4a8_prefill_gemm.cu does; a host call, no stream work).
template <int kBlocks, bool kHighRows, typename Out>
cudaError_t OptInSharedMemory() {
  using L = Layout<kBlocks, kHighRows>;
  if (L::kBytes <= 48 * 1024) return cudaSuccess;
  static std::mutex mutex;
  static std::vector<bool> opted_in;  // indexed by device ordinal
  int device = 0;
  if (const cudaError_t error = cudaGetDevice(&device); error != cudaSuccess) return error;
  std::lock_guard<std::mutex> lock(mutex);
  if (device < static_cast<int>(opted_in.size()) && opted_in[device]) return cudaSuccess;
  const cudaError_t error =
      cudaFuncSetAttribute(W4A8DecodePipelinedKernel<kBlocks, kHighRows, Out>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize, L::kBytes);
  if (error != cudaSuccess) return error;
  if (device >= static_cast<int>(opted_in.size())) opted_in.resize(device + 1, false);
  opted_in[device] = true;
  return cudaSuccess;
}

template <int kBlocks, bool kHighRows, typename Out>
cudaError_t LaunchFor(const W4A8DecodeParams& p, cudaStream_t stream) {
  using L = Layout<kBlocks, kHighRows>;
  if (const cudaError_t error = OptInSharedMemory<kBlocks, kHighRows, Out>();
      error != cudaSuccess) {
    return error;
  }
  const unsigned grid =
      static_cast<unsigned>((static_cast<int64_t>(p.n) + L::kChannels - 1) / L::kChannels);
  W4A8DecodePipelinedKernel<kBlocks, kHighRows, Out><<<grid, kThreads, L::kBytes, stream>>>(p);
  return cudaGetLastError();
}

template <int kBlocks, typename Out>
cudaError_t LaunchForRows(const W4A8DecodeParams& p, cudaStream_t stream) {
  return p.m > 8 ? LaunchFor<kBlocks, true, Out>(p, stream)
                 : LaunchFor<kBlocks, false, Out>(p, stream);
}

template <int kBlocks, bool kHighRows>
int ResidentCtas() {
  using L = Layout<kBlocks, kHighRows>;
  if (OptInSharedMemory<kBlocks, kHighRows, __nv_bfloat16>() != cudaSuccess) return 0;
  int blocks = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(
          &blocks, W4A8DecodePipelinedKernel<kBlocks, kHighRows, __nv_bfloat16>, kThreads,
          L::kBytes) != cudaSuccess) {
    return 0;
  }
  return blocks;
}

}  // namespace

cudaError_t LaunchW4A8DecodePipelined(const W4A8DecodeParams& p, cudaStream_t stream) {
  if (p.group_size % kWindow != 0 || (p.pipelined_channels != 16 && p.pipelined_channels != 32)) {
    return cudaErrorInvalidValue;
  }
  if (p.pipelined_channels == 16) {
    return p.y_is_bf16 ? LaunchForRows<1, __nv_bfloat16>(p, stream)
                       : LaunchForRows<1, float>(p, stream);
  }
  return p.y_is_bf16 ? LaunchForRows<2, __nv_bfloat16>(p, stream)
                     : LaunchForRows<2, float>(p, stream);
}

int W4A8PipelinedKernelResidentCtas(int channels, bool high_rows) {
  if (channels == 16) return high_rows ? ResidentCtas<1, true>() : ResidentCtas<1, false>();
  if (channels == 32) return high_rows ? ResidentCtas<2, true>() : ResidentCtas<2, false>();
  return 0;
}

int W4A8PipelinedExpectedResidentCtas(int channels) {
  return channels == 16 ? Layout<1, false>::kMinBlocksPerSm : Layout<2, false>::kMinBlocksPerSm;
}

}  // namespace flatfleet::cuda::internal
