// Decode W4A8 GEMM (m <= 16): memory-bound, so the design is about keeping weight bytes in flight.
//
// Tensor-core kernels. Each warp owns kBlocks blocks of 8 output channels and walks all of K in
// order, so it holds whole outputs: the int32 group sums (mma.sync m16n8k32 s8, activations as
// the A operand with rows >= m zero, weights as B) are folded into float partials in registers in
// ascending group order, exactly as the reference: partial = fmaf(float(acc_g), s_w[n, g],
// partial); y = partial * s_x[r] (then + add[n], one rounding each). No block barriers: warps are
// independent (what shared memory there is, is per warp).
//
// Weights stream in windows of 128 K elements: lane (g, t) (g = lane / 4, t = lane % 4) loads the
// 16 bytes of chunk t (K elements 32t .. 32t + 31 of the window) of channel g of a block. The
// MMA's k order is a permutation of K within a scale group (integer sums do not depend on order),
// chosen so that no data moves between lanes when possible. Two loops over the windows:
//  * whole-window groups (group_size a multiple of 128, hence k too; the real models): every
//    window lies in one group, so MMA s of a window takes word s of each lane's chunk. The
//    weights stream through a per-warp ring of windows in shared memory (cp.async: deep in
//    flight without holding registers), the window's scales and zero points through a smaller
//    register ring, both loaded well before use: no load latency in the warp's chain;
//  * any group size (multiples of 32): a 4 x 4 word transpose inside each lane quad gives lane t
//    word t of every chunk, so that one MMA covers exactly one 32-element chunk and stays inside
//    one group. Batches of windows in registers, double-buffered, with the scales and zero
//    points fetched one group ahead.
// Activations (a few KB, shared by all warps) are read through L1, where they mostly hit.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/decode_gemm_device.cuh"
#include "kernels/cuda/int4_unpack.h"
#include "kernels/cuda/w4a8_decode_gemm_launch.h"

namespace flatfleet::cuda::internal {
namespace {

using namespace decode_gemm;  // NOLINT: the shared device helpers

constexpr int kWarpsPerBlock = 4;
constexpr int kThreads = kWarpsPerBlock * 32;
constexpr int kWindow = 128;  // K elements per lane-quad load: 4 chunks of 32
constexpr unsigned kFullMask = 0xffffffffu;

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

// What every lane of a warp of the tensor-core kernels knows about its place in the problem.
template <int kBlocks>
struct WarpTile {
  int g, t;        // lane / 4 (B column, A rows g and g + 8), lane % 4
  int64_t n_base;  // first of the warp's 8 * kBlocks channels
  int groups;
  int windows;
  uint32_t flip;  // nibble flip of the storage convention
  // This lane's weight rows (B column g of each block), offset to its chunk t of a window.
  const uint32_t* w_row[kBlocks];
  bool w_row_valid[kBlocks];
  // This lane's activation rows g and g + 8, offset by 8t; rows >= m contribute zeros.
  const int8_t* x_lo;
  const int8_t* x_hi;
  bool x_valid_lo, x_valid_hi;

  __device__ __forceinline__ WarpTile(const W4A8DecodeParams& p, int64_t warp, int lane) {
    g = lane / 4;
    t = lane % 4;
    n_base = warp * 8 * kBlocks;
    groups = p.k / p.group_size;
    windows = (p.k + kWindow - 1) / kWindow;
    flip = p.w_unsigned_nibbles ? kUnsignedNibbleFlip : kSignedNibbleFlip;
    const int64_t words_per_row = p.k / 8;
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
      const int64_t row = n_base + 8 * b + g;
      w_row_valid[b] = row < p.n;
      w_row[b] = p.w_words + (w_row_valid[b] ? row : 0) * words_per_row + 4 * t;
    }
    x_valid_lo = g < p.m;
    x_valid_hi = g + 8 < p.m;
    x_lo = p.x_codes + static_cast<int64_t>(x_valid_lo ? g : 0) * p.k + 8 * t;
    x_hi = p.x_codes + static_cast<int64_t>(x_valid_hi ? g + 8 : 0) * p.k + 8 * t;
    // The warp's channels [n_base, n_end): their scales (and zero points) are contiguous.
    const int64_t n_end = min(static_cast<int64_t>(p.n), n_base + 8 * kBlocks);
    PrefetchRangeL2(p.w_scales, n_base * groups * 2, n_end * groups * 2, lane);
    if (p.w_zero_points != nullptr) {
      PrefetchRangeL2(p.w_zero_points, n_base * groups, n_end * groups, lane);
    }
  }

  // Output column of C-fragment element e (row g + 8 (e / 2), column 2t + e % 2) of block b.
  __device__ __forceinline__ int64_t OutputColumn(int b, int e) const {
    return n_base + 8 * b + 2 * t + e % 2;
  }

  // The weights of window `window` for block b: chunk t of row g (zeros past k or n).
  __device__ __forceinline__ uint4 LoadWeights(const W4A8DecodeParams& p, int window, int b) const {
    const bool valid = window < windows && window * kWindow + 32 * t < p.k && w_row_valid[b];
    return valid ? LoadStreaming16(w_row[b] + static_cast<int64_t>(window) * 16)
                 : make_uint4(0, 0, 0, 0);
  }

  // A fragment of the chunk at K offset kc: bytes kc + 8t + 0..3 (a0, a1) and kc + 8t + 4..7
  // (a2, a3) of rows g (a0, a2) and g + 8 (a1, a3).
  __device__ __forceinline__ void LoadActivations(int kc, uint32_t (&a)[4]) const {
    const uint2 lo = x_valid_lo ? LoadActivation8(x_lo + kc) : make_uint2(0, 0);
    const uint2 hi = x_valid_hi ? LoadActivation8(x_hi + kc) : make_uint2(0, 0);
    a[0] = lo.x;
    a[1] = hi.x;
    a[2] = lo.y;
    a[3] = hi.y;
  }

  // acc += the chunk's product for block b: `word` is word t of the chunk (after the transpose).
  __device__ __forceinline__ void MultiplyChunk(const uint32_t (&a)[4], uint32_t word,
                                                uint32_t zero_plus_8, int32_t (&acc)[4]) const {
    const uint32_t b0 = CenteredInt8x4(word & 0x0f0f0f0fu, flip, zero_plus_8);
    const uint32_t b1 = CenteredInt8x4((word >> 4) & 0x0f0f0f0fu, flip, zero_plus_8);
    MmaInt8(acc, a, b0, b1);
  }

  template <typename Out>
  __device__ __forceinline__ void Store(const W4A8DecodeParams& p,
                                        const float (&partial)[kBlocks][4]) const {
    const float x_scale_lo = x_valid_lo ? HalfBitsToFloat(p.x_scales[g]) : 0.0f;
    const float x_scale_hi = x_valid_hi ? HalfBitsToFloat(p.x_scales[g + 8]) : 0.0f;
#pragma unroll
    for (int b = 0; b < kBlocks; ++b)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = g + 8 * (e / 2);
        const int64_t col = OutputColumn(b, e);
        if (row < p.m && col < p.n) {
          Finish<Out>(p, partial[b][e], e / 2 == 0 ? x_scale_lo : x_scale_hi, row,
                      static_cast<int>(col));
        }
      }
  }
};

// Whole-window groups (group_size % 128 == 0, so k % 128 == 0 and every window is full). Since a
// window lies in one group, its MMAs may mix its chunks: lane t keeps chunk t (no transpose) and
// MMA s takes word s of it: B = K elements 32t + 8s + 0..3 (low nibbles) and 32t + 8s + 4..7
// (high nibbles) of the window, A = the same elements of rows g and g + 8, i.e. bytes
// 32t .. 32t + 31 of each row, two 16-byte loads.
//
// The weights stream through a per-warp ring of kRing windows in shared memory (cp.async,
// kRing - 1 windows in flight per lane, no registers held); the scales and zero points of each
// window through a register ring of kScaleRing windows. Each lane reads back only the 16 bytes it
// copied itself, so cp.async.wait_group suffices (no barrier).
template <int kBlocks, int kRing, int kScaleRing, typename Out>
__global__ void __launch_bounds__(kThreads) W4A8DecodeRingKernel(const W4A8DecodeParams p) {
  static_assert(kRing % kScaleRing == 0, "the scale ring index must be static");
  static_assert(kRing >= 2, "one window computed while the others are in flight");
  // [warp][slot][block][lane]: consecutive lanes, consecutive 16 bytes (no bank conflicts).
  __shared__ __align__(16) uint4 stage[kWarpsPerBlock][kRing][kBlocks][32];
  const int lane = threadIdx.x % 32, warp_in_block = threadIdx.x / 32;
  const int64_t warp = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp_in_block;
  if (warp * 8 * kBlocks >= p.n) return;  // whole warps only; the kernel has no block barrier
  const WarpTile<kBlocks> tile(p, warp, lane);
  const int g = tile.g, t = tile.t;
  const bool has_zero_points = p.w_zero_points != nullptr;
  const int windows_per_group = p.group_size / kWindow;
  // Activation rows g and g + 8 at byte 32t of a window (row 0 stands in for rows >= m, which
  // are never read).
  const int8_t* x_lo = p.x_codes + static_cast<int64_t>(tile.x_valid_lo ? g : 0) * p.k + 32 * t;
  const int8_t* x_hi = p.x_codes + static_cast<int64_t>(tile.x_valid_hi ? g + 8 : 0) * p.k + 32 * t;

  auto stage_address = [&](int slot, int b) {
    return SharedAddress(&stage[warp_in_block][slot][b][lane]);
  };
  // Window `window` into ring slot `slot` (zeros past the last window or past n), one commit
  // group per call, also when empty, so that commit group i is always window i.
  auto issue_window = [&](int window, int slot) {
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
      const bool valid = window < tile.windows && tile.w_row_valid[b];
      CopyAsync16(stage_address(slot, b),
                  valid ? tile.w_row[b] + static_cast<int64_t>(window) * 16 : p.w_words, valid);
    }
    CopyAsyncCommit();
  };

  struct ScaleSlot {
    uint32_t scale[kBlocks][2];  // FP16 bits of output columns 2t, 2t + 1
    uint32_t zero[kBlocks];      // zero-point byte of B column g
  };
  // Called once per window, in window order (the group is counted, not divided).
  int load_group = 0, load_window_in_group = 0;
  auto load_scales = [&](int window, ScaleSlot& slot) {
    const bool valid = window < tile.windows;
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int64_t col = tile.n_base + 8 * b + 2 * t + j;
        slot.scale[b][j] =
            valid && col < p.n ? LoadU16(p.w_scales + col * tile.groups + load_group) : 0u;
      }
      const int64_t row = tile.n_base + 8 * b + g;
      slot.zero[b] = valid && has_zero_points && row < p.n
                         ? LoadU8(p.w_zero_points + row * tile.groups + load_group)
                         : 0u;
    }
    if (++load_window_in_group == windows_per_group) {
      load_window_in_group = 0;
      ++load_group;
    }
  };

  // Two accumulator sets (MMAs 0, 2 and 1, 3) halve the chain of dependent MMAs.
  int32_t acc[2][kBlocks][4];
  float partial[kBlocks][4];
#pragma unroll
  for (int b = 0; b < kBlocks; ++b)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      acc[0][b][e] = 0;
      acc[1][b][e] = 0;
      partial[b][e] = 0.0f;
    }

  int fold_window_in_group = 0;
  // words[b][s]: word s of chunk t of this lane's row of block b.
  auto compute_window = [&](int window, const uint32_t(&words)[kBlocks][4],
                            const ScaleSlot& scales) {
    const int kw = window * kWindow;
    uint32_t lo[8], hi[8];  // bytes kw + 32t .. + 31 of rows g and g + 8 (zeros for rows >= m)
    LoadActivation32(tile.x_valid_lo, x_lo + kw, lo);
    LoadActivation32(tile.x_valid_hi, x_hi + kw, hi);
    uint32_t zero_plus_8[kBlocks];
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
      zero_plus_8[b] = ZeroPlus8x4(static_cast<int8_t>(static_cast<uint8_t>(scales.zero[b])));
    }
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      // a0, a1: bytes 8s + 0..3 of rows g, g + 8; a2, a3: bytes 8s + 4..7.
      const uint32_t a[4] = {lo[2 * s], hi[2 * s], lo[2 * s + 1], hi[2 * s + 1]};
#pragma unroll
      for (int b = 0; b < kBlocks; ++b) {
        tile.MultiplyChunk(a, words[b][s], zero_plus_8[b], acc[s % 2][b]);
      }
    }
    if (++fold_window_in_group == windows_per_group) {  // the window ends its group: fold it
      fold_window_in_group = 0;
#pragma unroll
      for (int b = 0; b < kBlocks; ++b)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int32_t sum = acc[0][b][e] + acc[1][b][e];  // exact: |sum| within the k bound
          partial[b][e] =
              fmaf(__int2float_rn(sum), HalfBitsToFloat(scales.scale[b][e % 2]), partial[b][e]);
          acc[0][b][e] = 0;
          acc[1][b][e] = 0;
        }
    }
  };

  // Prologue: windows 0 .. kRing - 2 (commit groups 0 .. kRing - 2), the first scales.
#pragma unroll
  for (int s = 0; s < kRing - 1; ++s) issue_window(s, s);
  ScaleSlot scale_ring[kScaleRing];
#pragma unroll
  for (int s = 0; s < kScaleRing; ++s) load_scales(s, scale_ring[s]);

  for (int base = 0; base < tile.windows; base += kRing) {
#pragma unroll
    for (int u = 0; u < kRing; ++u) {
      const int window = base + u;        // in slot u (base is a multiple of kRing)
      if (window >= tile.windows) break;  // warp-uniform
      // Committed so far: kRing - 1 + window groups; at most kRing - 2 pending means groups
      // 0 .. window (this window) have landed.
      CopyAsyncWait<kRing - 2>();
      uint32_t words[kBlocks][4];
#pragma unroll
      for (int b = 0; b < kBlocks; ++b) {
        const uint4 v = LoadShared16(stage_address(u, b));
        words[b][0] = v.x;
        words[b][1] = v.y;
        words[b][2] = v.z;
        words[b][3] = v.w;
      }
      // Refill the slot of the previous window (read one step ago and multiplied since: the
      // volatile MMAs that used it precede this copy).
      issue_window(window + kRing - 1, (u + kRing - 1) % kRing);
      // The scales of this window are in slot u % kScaleRing; load those of window + kScaleRing
      // into it (window order is kept: the prologue loaded 0 .. kScaleRing - 1).
      const ScaleSlot scales = scale_ring[u % kScaleRing];
      load_scales(window + kScaleRing, scale_ring[u % kScaleRing]);
      compute_window(window, words, scales);
    }
  }
  CopyAsyncWait<0>();  // nothing left in flight at exit (the tail's copies are zero fills)
  tile.template Store<Out>(p, partial);
}

// Intra-CTA split-K (group_size % 128 == 0, so k % 128 == 0): the CTA owns one block of 8
// output channels and its kSplit warps share K: in round r, warp s multiplies window r * kSplit
// + s (interleaved, so the CTA streams consecutive bytes of each weight row). On narrow layers
// this gives kSplit times the warps of the narrow kernel, each with a shorter chain.
//
// Exactness: each warp's int32 sum of its window (exact) and the window's scales go to shared
// memory; warp 0 adds the sums of a round's windows in ascending window order into the running
// int32 group sum (exact: every partial sum is a sum of products the k bound covers) and folds
// a group as the reference does when its last window is added: partial = fmaf(float(group sum),
// s_w, partial), groups in ascending order. Only warp 0 stores. The exchange is double-buffered
// by round parity, so one barrier per round suffices: round r + 2 rewrites buffer r % 2 only
// after every warp passed barrier r + 1, which warp 0 reaches after it has read buffer r % 2.
//
// Per warp, as in the ring kernel: a ring of kRing windows in shared memory (cp.async, kRing - 1
// windows in flight per lane), the scales and zero points kScaleRing rounds ahead in registers,
// and the activations of the next round loaded before this round's MMAs (they were the
// dependent L1/L2 loads in the chain).
template <int kSplit, int kRing, int kScaleRing, typename Out>
// At least 20 warps per SM resident (16 with 8-warp CTAs): a register cap that spills nothing
// (24 warps, 85 registers, spilled).
__global__ void __launch_bounds__(kSplit * 32, 20 / kSplit)
    W4A8DecodeSplitKernel(const W4A8DecodeParams p) {
  static_assert((kRing & (kRing - 1)) == 0 && kRing >= 2, "ring slots are round % kRing");
  static_assert(kScaleRing >= 1 && kRing % kScaleRing == 0, "the scale ring index is static");
  __shared__ __align__(16) uint4 stage[kSplit][kRing][32];
  __shared__ __align__(16) int4 exchange_sums[2][kSplit][32];
  __shared__ uint32_t exchange_scales[2][kSplit][32];  // FP16 bits of columns 2t (low), 2t + 1
  const int lane = threadIdx.x % 32, split = threadIdx.x / 32;
  const WarpTile<1> tile(p, blockIdx.x, lane);  // channels 8 * blockIdx.x .. + 7 (< n: the grid)
  const int g = tile.g, t = tile.t;
  const bool has_zero_points = p.w_zero_points != nullptr;
  const int windows_per_group = p.group_size / kWindow;
  const int rounds = (tile.windows + kSplit - 1) / kSplit;  // the same for every warp
  const int8_t* x_lo = p.x_codes + static_cast<int64_t>(tile.x_valid_lo ? g : 0) * p.k + 32 * t;
  const int8_t* x_hi = p.x_codes + static_cast<int64_t>(tile.x_valid_hi ? g + 8 : 0) * p.k + 32 * t;

  auto window_of = [&](int round) { return round * kSplit + split; };
  auto stage_address = [&](int round) {
    return SharedAddress(&stage[split][round & (kRing - 1)][lane]);
  };
  // This warp's window of `round` into its ring slot (zeros past the last window or past n), one
  // commit group per call, also when empty, so that commit group i is always round i.
  auto issue_round = [&](int round) {
    const int window = window_of(round);
    const bool valid = window < tile.windows && tile.w_row_valid[0];
    CopyAsync16(stage_address(round),
                valid ? tile.w_row[0] + static_cast<int64_t>(window) * 16 : p.w_words, valid);
    CopyAsyncCommit();
  };

  struct ScaleSlot {
    uint32_t scale[2];  // FP16 bits of output columns 2t, 2t + 1
    uint32_t zero;      // zero-point byte of B column g
  };
  auto load_scales = [&](int round, ScaleSlot& slot) {
    const int window = window_of(round);
    const bool valid = window < tile.windows;
    const int group = valid ? window / windows_per_group : 0;
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int64_t col = tile.n_base + 2 * t + j;
      slot.scale[j] = valid && col < p.n ? LoadU16(p.w_scales + col * tile.groups + group) : 0u;
    }
    const int64_t row = tile.n_base + g;
    slot.zero = valid && has_zero_points && row < p.n
                    ? LoadU8(p.w_zero_points + row * tile.groups + group)
                    : 0u;
  };
  // Bytes 32t .. 32t + 31 of rows g and g + 8 of this warp's window of `round` (zeros for rows
  // >= m; nothing read past the last window).
  auto load_activations = [&](int round, uint32_t(&lo)[8], uint32_t(&hi)[8]) {
    const int window = window_of(round);
    const bool valid = window < tile.windows;
    const int64_t kw = valid ? static_cast<int64_t>(window) * kWindow : 0;
    LoadActivation32(valid && tile.x_valid_lo, x_lo + kw, lo);
    LoadActivation32(valid && tile.x_valid_hi, x_hi + kw, hi);
  };

  // Prologue: rounds 0 .. kRing - 2 in flight, the first kScaleRing rounds' scales, round 0's
  // activations.
#pragma unroll
  for (int r = 0; r < kRing - 1; ++r) issue_round(r);
  ScaleSlot scale_ring[kScaleRing];
#pragma unroll
  for (int r = 0; r < kScaleRing; ++r) load_scales(r, scale_ring[r]);
  uint32_t next_lo[8], next_hi[8];
  load_activations(0, next_lo, next_hi);

  // Warp 0's fold state.
  int32_t group_sum[4] = {0, 0, 0, 0};
  float partial[1][4] = {{0.0f, 0.0f, 0.0f, 0.0f}};
  int fold_window_in_group = 0;

  for (int base = 0; base < rounds; base += kScaleRing) {
#pragma unroll
    for (int u = 0; u < kScaleRing; ++u) {
      const int round = base + u;
      if (round >= rounds) break;  // CTA-uniform: every warp runs the same barriers
      // Committed so far: kRing - 1 + round groups; at most kRing - 2 pending means groups
      // 0 .. round (this round) have landed.
      CopyAsyncWait<kRing - 2>();
      const uint4 v = LoadShared16(stage_address(round));
      const uint32_t words[4] = {v.x, v.y, v.z, v.w};
      // Refill the slot of the previous round (its words were consumed by last round's MMAs, or
      // unused when that window did not exist).
      issue_round(round + kRing - 1);
      const ScaleSlot scales = scale_ring[u];
      load_scales(round + kScaleRing, scale_ring[u]);
      uint32_t lo[8], hi[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        lo[i] = next_lo[i];
        hi[i] = next_hi[i];
      }
      load_activations(round + 1, next_lo, next_hi);  // in flight during the MMAs below

      int32_t acc[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
      if (window_of(round) < tile.windows) {  // warp-uniform
        const uint32_t zero_plus_8 =
            ZeroPlus8x4(static_cast<int8_t>(static_cast<uint8_t>(scales.zero)));
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          // a0, a1: bytes 8s + 0..3 of rows g, g + 8; a2, a3: bytes 8s + 4..7.
          const uint32_t a[4] = {lo[2 * s], hi[2 * s], lo[2 * s + 1], hi[2 * s + 1]};
          tile.MultiplyChunk(a, words[s], zero_plus_8, acc[s % 2]);
        }
      }
      const int buffer = round & 1;
      exchange_sums[buffer][split][lane] = make_int4(acc[0][0] + acc[1][0], acc[0][1] + acc[1][1],
                                                     acc[0][2] + acc[1][2], acc[0][3] + acc[1][3]);
      exchange_scales[buffer][split][lane] = scales.scale[0] | scales.scale[1] << 16;
      __syncthreads();
      if (split == 0) {
        // The round's windows in ascending order: round * kSplit + w for w = 0 .. kSplit - 1.
#pragma unroll
        for (int w = 0; w < kSplit; ++w) {
          if (round * kSplit + w >= tile.windows) break;  // warp-uniform: the last round is short
          const int4 sum = exchange_sums[buffer][w][lane];
          group_sum[0] += sum.x;
          group_sum[1] += sum.y;
          group_sum[2] += sum.z;
          group_sum[3] += sum.w;
          if (++fold_window_in_group == windows_per_group) {  // the window ends its group
            fold_window_in_group = 0;
            const uint32_t scale_bits = exchange_scales[buffer][w][lane];
            const float scale[2] = {HalfBitsToFloat(scale_bits & 0xffffu),
                                    HalfBitsToFloat(scale_bits >> 16)};
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              partial[0][e] = fmaf(__int2float_rn(group_sum[e]), scale[e % 2], partial[0][e]);
              group_sum[e] = 0;
            }
          }
        }
      }
    }
  }
  CopyAsyncWait<0>();  // nothing left in flight at exit (the tail's copies are zero fills)
  if (split == 0) tile.template Store<Out>(p, partial);
}

// Any group size (multiple of 32; k multiple of 32). kBatch windows loaded per batch, the next
// batch issued before the current one is computed; scales and zero points fetched one group
// ahead.
template <int kBlocks, int kBatch, typename Out>
__global__ void __launch_bounds__(kThreads) W4A8DecodeBatchKernel(const W4A8DecodeParams p) {
  const int lane = threadIdx.x % 32;
  const int64_t warp = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (warp * 8 * kBlocks >= p.n) return;  // whole warps only; the kernel has no block barrier
  const WarpTile<kBlocks> tile(p, warp, lane);
  const int g = tile.g, t = tile.t;
  const int k = p.k, group_size = p.group_size, groups = tile.groups;
  const int batches = (tile.windows + kBatch - 1) / kBatch;
  const bool has_zero_points = p.w_zero_points != nullptr;

  auto load_batch = [&](int batch, uint4(&buffer)[kBatch][kBlocks]) {
#pragma unroll
    for (int u = 0; u < kBatch; ++u)
#pragma unroll
      for (int b = 0; b < kBlocks; ++b) buffer[u][b] = tile.LoadWeights(p, batch * kBatch + u, b);
  };

  // Scales of this lane's output columns and zero points of its B columns, for one group;
  // fetched one group ahead.
  uint32_t scale_next[kBlocks][2];
  uint32_t zero_next[kBlocks];
  float scale[kBlocks][2] = {};  // set at the first chunk (k = 0 starts group 0)
  uint32_t zero_plus_8[kBlocks] = {};
  auto fetch_group = [&](int group) {
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int64_t col = tile.n_base + 8 * b + 2 * t + j;
        scale_next[b][j] =
            col < p.n && group < groups ? LoadU16(p.w_scales + col * groups + group) : 0u;
      }
      const int64_t row = tile.n_base + 8 * b + g;
      zero_next[b] = has_zero_points && row < p.n && group < groups
                         ? LoadU8(p.w_zero_points + row * groups + group)
                         : 0u;
    }
  };
  fetch_group(0);

  int32_t acc[kBlocks][4];
  float partial[kBlocks][4];
#pragma unroll
  for (int b = 0; b < kBlocks; ++b)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      acc[b][e] = 0;
      partial[b][e] = 0.0f;
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
      if (kc >= k) break;          // warp-uniform: the last window may be short
      if (kc % group_size == 0) {  // the group starts: its prefetched values become current
        const int group = kc / group_size;
#pragma unroll
        for (int b = 0; b < kBlocks; ++b) {
#pragma unroll
          for (int j = 0; j < 2; ++j) scale[b][j] = HalfBitsToFloat(scale_next[b][j]);
          zero_plus_8[b] = ZeroPlus8x4(static_cast<int8_t>(static_cast<uint8_t>(zero_next[b])));
        }
        fetch_group(group + 1);
      }
      uint32_t a[4];
      tile.LoadActivations(kc, a);
#pragma unroll
      for (int b = 0; b < kBlocks; ++b) tile.MultiplyChunk(a, words[b][c], zero_plus_8[b], acc[b]);
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
      if (window < tile.windows) compute_window(window, current[u]);  // warp-uniform
    }
    if (batch + 1 < batches) {
#pragma unroll
      for (int u = 0; u < kBatch; ++u)
#pragma unroll
        for (int b = 0; b < kBlocks; ++b) current[u][b] = next[u][b];
    }
  }
  tile.template Store<Out>(p, partial);
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
    partial = fmaf(__int2float_rn(acc), HalfBitsToFloat(p.w_scales[col * groups + group]), partial);
  }
  Finish<Out>(p, partial, HalfBitsToFloat(p.x_scales[row]), row, static_cast<int>(col));
}

template <int kBlocks>
unsigned TensorCoreGrid(const W4A8DecodeParams& p) {
  const int64_t warps = (static_cast<int64_t>(p.n) + 8 * kBlocks - 1) / (8 * kBlocks);
  return static_cast<unsigned>((warps + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

// kBlocks channel blocks per warp. Ring: 16 windows of one block or 8 of two (15 x 16 or
// 7 x 32 bytes per lane in flight; 32 KB of static shared memory per block of 4 warps), scales 4
// windows ahead. Batch: 8 or 4 windows, double-buffered in registers.
template <int kBlocks, typename Out>
cudaError_t LaunchTensorCore(const W4A8DecodeParams& p, cudaStream_t stream) {
  const unsigned grid = TensorCoreGrid<kBlocks>(p);
  if (p.group_size % kWindow == 0) {
    W4A8DecodeRingKernel<kBlocks, 16 / kBlocks, 4, Out><<<grid, kThreads, 0, stream>>>(p);
  } else {
    W4A8DecodeBatchKernel<kBlocks, 8 / kBlocks, Out><<<grid, kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

// One CTA per 8 channels. Rings of 16, 8, 4 windows for 2, 4, 8 warps: up to 16 KB of weights
// in flight per CTA; the static shared memory is 16 KB + 1.25 KB per warp (at most 26 KB). Scales
// four rounds ahead, two for split 4 (four spill there under its register cap).
template <typename Out>
cudaError_t LaunchSplitK(const W4A8DecodeParams& p, cudaStream_t stream) {
  const unsigned grid = static_cast<unsigned>((static_cast<int64_t>(p.n) + 7) / 8);
  switch (p.split) {
    case 2:
      W4A8DecodeSplitKernel<2, 16, 4, Out><<<grid, 2 * 32, 0, stream>>>(p);
      break;
    case 4:
      W4A8DecodeSplitKernel<4, 8, 2, Out><<<grid, 4 * 32, 0, stream>>>(p);
      break;
    case 8:
      W4A8DecodeSplitKernel<8, 4, 4, Out><<<grid, 8 * 32, 0, stream>>>(p);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

template <typename Out>
cudaError_t LaunchForOutput(const W4A8DecodeParams& p, cudaStream_t stream) {
  switch (p.variant) {
    case W4A8DecodeVariant::kNarrow:
      return LaunchTensorCore<1, Out>(p, stream);
    case W4A8DecodeVariant::kWide:
      return LaunchTensorCore<2, Out>(p, stream);
    case W4A8DecodeVariant::kSplitK:
      return LaunchSplitK<Out>(p, stream);
    case W4A8DecodeVariant::kStreaming:
      return LaunchW4A8DecodeStreaming(p, stream);
    case W4A8DecodeVariant::kPipelined:
      return LaunchW4A8DecodePipelined(p, stream);
    case W4A8DecodeVariant::kSimple: {
      const dim3 grid(static_cast<unsigned>((p.n + kThreads - 1) / kThreads),
                      static_cast<unsigned>(p.m));
      W4A8DecodeSimpleKernel<Out><<<grid, kThreads, 0, stream>>>(p);
      return cudaGetLastError();
    }
  }
  return cudaErrorInvalidValue;
}

template <int kSplit, int kRing, int kScaleRing>
int ResidentWarps() {
  int blocks = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(
          &blocks, W4A8DecodeSplitKernel<kSplit, kRing, kScaleRing, __nv_bfloat16>, kSplit * 32,
          0) != cudaSuccess) {
    return 0;
  }
  return blocks * kSplit;
}

}  // namespace

int W4A8SplitKernelResidentWarps(int split) {
  switch (split) {  // the configurations LaunchSplitK launches
    case 2:
      return ResidentWarps<2, 16, 4>();
    case 4:
      return ResidentWarps<4, 8, 2>();
    case 8:
      return ResidentWarps<8, 4, 4>();
  }
  return 0;
}

cudaError_t LaunchW4A8Decode(const W4A8DecodeParams& p, cudaStream_t stream) {
  if (p.m <= 0 || p.n <= 0) return cudaSuccess;
  return p.y_is_bf16 ? LaunchForOutput<__nv_bfloat16>(p, stream)
                     : LaunchForOutput<float>(p, stream);
}

}  // namespace flatfleet::cuda::internal
