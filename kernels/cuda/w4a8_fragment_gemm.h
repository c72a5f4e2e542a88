// W4A8 GEMM for decode and small batches (m = 1..32 rows) over weights pre-shuffled into the
// order the tensor-core fragments want (the "fragment layout", w4a8_fragment_layout.h), with K
// split over CTAs and a deterministic in-kernel reduction.
//
// Why a new kernel (bench/RESULTS.md, session 6): every decode kernel of w4a8_decode_gemm.h keeps
// one CTA on a tile of output channels over all of K, so that its float fold runs in the CPU
// reference's order (bit-exact); on the 8B and 70B layers that leaves too few independent loads in
// flight and none of them streams more than ~2 TB/s of weights. Here:
//  * each lane's operands of two m16n8k32 MMAs (16 channels x 64 K elements of INT4) are one
//    16-byte load, a warp's load is 512 contiguous bytes, and a warp streams each of its 16-channel
//    blocks as one contiguous run: no shuffles, no shared memory for the weights;
//  * every lane keeps kDepth chunks of loads in flight in a register ring (no barrier ever waits
//    on weights), the 4 or 8 warps of a CTA (warps_per_cta) share their K slice's activations
//    through shared memory;
//  * K is split into `split` ranges of whole groups, one CTA each; the CTAs of a tile write their
//    float partials to `split_partials`, and the last to arrive (a counter per tile) adds them in
//    split order and applies the epilogue. No atomics on data: the result depends only on the
//    operands and `split`, never on the schedule.
//
// Numerics. Per output (row r, channel j) and per group g of the split: the exact int32 sum
// S_g = sum_k x[r, k] (c[j, k] - z[j, g]), folded in ascending group order as the reference
// quant::GemmW4A8 does, p = fmaf(float(S_g), s_w[j, g], p) from p = 0; then
// y = round((p_0 + p_1 + ... + p_{split-1}) * s_x[r] [+ add[j]]) (each operation one float32
// rounding, the conversion to bf16 round-to-nearest-even). With split = 1 this is the reference's
// computation: bit-exact with quant::GemmW4A8 followed by AddBias. With split > 1 the float sums
// are regrouped: |y - y_ref| <= (groups + split) * 2^-23 * |s_x[r]| * sum_g |S_g s_w[j, g]| before
// the output rounding (tests/gpu/w4a8_fragment_gemm_test.cc checks it). The split depends only on
// (n, k, group_size, the SM count), never on m: a row's result does not depend on the batch's size.
// Nor on blocks_per_warp, ring_depth or warps_per_cta: each output's group sums and their fold run
// in one lane in the same order whatever the tile, and the splits add in split order.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/gemm_element_type.h"

namespace flatfleet::cuda {

inline constexpr int64_t kW4A8FragmentMaxRows = 32;

// Output channels per CTA tile (warps_per_cta x blocks_per_warp x 16).
constexpr int64_t W4A8FragmentTileChannels(int blocks_per_warp, int warps_per_cta) {
  return int64_t{16} * warps_per_cta * blocks_per_warp;
}

// How a call is cut: K into `split` CTAs of whole groups, channels into tiles of
// W4A8FragmentTileChannels(blocks_per_warp, warps_per_cta).
// blocks_per_warp, ring_depth and warps_per_cta change no result (only the split does): they may
// follow m.
struct W4A8FragmentConfig {
  int split = 1;
  int blocks_per_warp = 2;  // 1 or 2
  int ring_depth = 4;       // chunks of weight loads in flight per lane: 4, or 8 with 1 block
  // 4 (launch bounds: 4 CTAs per SM) or 8 (2 per SM; one activation copy for twice the weight
  // streams). Both at most 128 registers a thread.
  int warps_per_cta = 4;
  // 0: each lane's weights through its register ring (ring_depth chunks ahead). 2..8: through
  // shared memory instead, weight_stages stages of ring_depth chunks per warp, each filled by bulk
  // copies (cp.async.bulk) on an mbarrier: more bytes in flight per SM than registers allow. Needs
  // w_fragment_scales 16-byte aligned; W4A8FragmentStagedFits says whether the stages fit.
  int weight_stages = 0;
};

// Whether a staged configuration's shared memory (its stages and the activation buffers of m
// rows) fits one CTA.
bool W4A8FragmentStagedFits(int64_t m, const W4A8FragmentConfig& config);

// The configuration kAuto takes for m rows (see the .cc for the rules and bench/RESULTS.md for the
// tables they were taken from). staged_allowed (the default): W4A8FragmentStagedSplit, 2 weight
// stages of 8 chunks, one block per warp, 8 warps per CTA from n >= 14336 (else 4), at every m.
// false (scales not 16-byte aligned, or the caller's choice): the register ring's rule, whose
// blocks_per_warp and ring_depth follow m. The split never depends on m.
W4A8FragmentConfig ChooseW4A8FragmentConfig(int64_t m, int64_t n, int64_t k, int64_t group_size,
                                            int sm_count, bool staged_allowed = true);

// The staged rule's split (the .cc has the numbers): the smallest that divides the groups (each
// split at least 4 chunks) and gives ceil(n / 64) * split >= 1.9 SMs.
int W4A8FragmentStagedSplit(int64_t n, int64_t k, int64_t group_size, int sm_count);

// Whether the fragment GEMM is the faster W4A8 kernel for an m x n x k problem (measured against
// the decode and mid-M kernels on the H200; the .cc has the numbers), with the staged rule
// (staged_allowed) or the ring's. Callers that need one kernel for every row count
// (batch-invariant results) may ignore it.
bool W4A8FragmentWins(int64_t m, int64_t n, int64_t k, bool staged_allowed = true);

// The most splits any configuration takes (the workspace bound): 16.
inline constexpr int kW4A8FragmentMaxSplit = 16;
// Workspace a call needs: `split * m * n` floats of partials (none at split 1) and one int32
// counter per tile, which must be zero before the first call; every call leaves them zero again.
// W4A8FragmentCounterCount(n) covers every configuration (the smallest tile: 4 warps, 1 block).
int64_t W4A8FragmentPartialFloats(int64_t m, int64_t n, int split);
int64_t W4A8FragmentCounterCount(int64_t n);

struct DeviceW4A8FragmentGemm {
  int64_t m = 0;                       // 1..kW4A8FragmentMaxRows
  int64_t n = 0;                       // >= 1
  int64_t k = 0;                       // a multiple of group_size
  int64_t group_size = 0;              // a multiple of 128 dividing k (k: per channel)
  const int8_t* x_codes = nullptr;     // [m, k], rows k bytes apart, 16-byte aligned
  const uint16_t* x_scales = nullptr;  // [m], FP16 bits
  // The fragment layout of the weights (w4a8_fragment_layout.h: PackW4A8Fragments).
  const uint32_t* w_fragments = nullptr;        // 16-byte aligned
  const uint32_t* w_fragment_scales = nullptr;  // 8-byte aligned
  bool w_unsigned_nibbles = false;              // the source's PackedInt4Matrix::signedness
  // false promises a symmetric layer (signed nibbles, every zero point 0): the kernel then skips
  // them and unpacks in fewer instructions (same result). true is right for every layer.
  bool w_has_zero_points = true;
  const float* epilogue_add = nullptr;  // [n] added to every row, or null
  void* y = nullptr;                    // [m, n] of y_type, rows y_stride elements apart
  int64_t y_stride = 0;                 // 0 means n
  GemmElementType y_type = GemmElementType::kFloat32;
  // split 0 takes ChooseW4A8FragmentConfig; else split (1..kW4A8FragmentMaxSplit, at most the
  // number of groups), blocks_per_warp (1 or 2), ring_depth (4 or 8), warps_per_cta (4 or 8) and
  // weight_stages (0, or 2..8 where they fit) as given.
  W4A8FragmentConfig config{.split = 0, .blocks_per_warp = 0, .ring_depth = 0};
  float* split_partials = nullptr;    // W4A8FragmentPartialFloats floats when split > 1
  int32_t* split_counters = nullptr;  // W4A8FragmentCounterCount zeros when split > 1
  int sm_count = 0;                   // 0 queries the current device
};

// The configuration a call with these arguments runs (config as given, or chosen: staged only
// with 16-byte aligned w_fragment_scales and `staged_allowed`).
W4A8FragmentConfig ResolveW4A8FragmentConfig(const DeviceW4A8FragmentGemm& args,
                                             bool staged_allowed = true);

// Validates (InvalidArgument naming the field, OutOfRange when int32 could overflow) and enqueues
// on `stream`. Allocates nothing; may be graph-captured.
absl::Status GemmW4A8Fragment(const DeviceW4A8FragmentGemm& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
