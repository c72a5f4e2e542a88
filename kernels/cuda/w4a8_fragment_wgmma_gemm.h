// W4A8 GEMM for prefill and mid-sized batches on Hopper's warpgroup MMA over the weights' fragment
// layout (w4a8_fragment_layout.h: the layout the decode-sized fragment GEMM streams, so one copy of
// the weights serves both).
//
// Why (bench/RESULTS.md, sessions 5-6): the earlier wgmma kernel (w4a8_prefill_gemm.h) unpacks
// INT4 weight tiles to INT8 in shared memory and reads both operands from there, with the fold of
// the group sums in lockstep with its MMAs: 340-390 TOP/s at 4096 rows, about half of cuBLASLt
// bf16. Here the weights are wgmma's A operand straight from registers (each lane's 16-byte
// fragment load unpacked in place), the activations its B operand from shared memory, a producer
// warpgroup fills a ring of stages through mbarriers, and two consumer warpgroups that only meet
// at the ring overlap one's fold with the other's MMAs (w4a8_fragment_wgmma_gemm.cu).
//
// Numerics: per output (row r, channel j) and per group g of a split of K, the exact int32 sum
// S_g, folded in ascending group order, p = fmaf(float(S_g), s_w[j, g], p) from p = 0; then
// y = round((p_0 + ... + p_{split-1}) * s_x[r] [+ add[j]]) (each operation one float32 rounding,
// bf16 by round-to-nearest-even). With split = 1 (the rule above 128 rows, below 96 groups, and
// wherever the tiles alone fill the GPU) this is bit-exact with quant::GemmW4A8 followed by
// AddBias. With split > 1 (few tiles and long K: batched decode on Llama-3-8B's down_proj, 70B's
// TP halves) the float sums are regrouped, within
// |y - y_ref| <= (groups + split) 2^-23 |s_x[r]| sum_g |S_g s_w[j, g]| before the output rounding,
// as the decode-sized fragment GEMM (tests/gpu/w4a8_fragment_wgmma_gemm_test.cc checks it); the
// last CTA of a tile adds the splits in split order, so the result never depends on the schedule.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/gemm_element_type.h"

namespace flatfleet::cuda {

struct DeviceW4A8FragmentWgmmaGemm {
  int64_t m = 0;                       // >= 1
  int64_t n = 0;                       // >= 1
  int64_t k = 0;                       // a multiple of 128
  int64_t group_size = 0;              // a multiple of 128 dividing k, sums below 2^22 (below)
  const int8_t* x_codes = nullptr;     // [m, k], rows k bytes apart, 16-byte aligned
  const uint16_t* x_scales = nullptr;  // [m], FP16 bits
  // The fragment layout of the weights (PackW4A8Fragments).
  const uint32_t* w_fragments = nullptr;        // 16-byte aligned
  const uint32_t* w_fragment_scales = nullptr;  // 8-byte aligned
  bool w_unsigned_nibbles = false;              // the source's PackedInt4Matrix::signedness
  // Whether the layer has zero points. The kernel needs every group sum below 2^22 in magnitude
  // (group_size * 127 * max |w - zero| < 2^22: groups up to 4608 without zero points, 2176 with);
  // a layout built without zero points holds zero bytes, and false allows the wider groups.
  bool w_has_zero_points = true;
  const float* epilogue_add = nullptr;  // [n] added to every row, or null
  void* y = nullptr;                    // [m, n] of y_type, rows y_stride elements apart
  int64_t y_stride = 0;                 // 0 means n
  GemmElementType y_type = GemmElementType::kFloat32;
  // Tokens per CTA tile: 64 or 128, or 0 for the rule (64 up to 64 rows, else 128); token parts: 2
  // or 4 wgmma groups a tile's tokens are cut into (each part's fold overlaps the later parts'
  // wgmmas), or 0 for the rule (2). Neither changes a result.
  int tokens_per_tile = 0;
  int token_parts = 0;
  // K split over CTAs: 0 takes ChooseW4A8FragmentWgmmaSplit; else 1..kW4A8FragmentWgmmaMaxSplit,
  // at most the groups, none left empty. With split > 1 the call needs split_partials
  // (W4A8FragmentWgmmaPartialFloats) and split_counters (W4A8FragmentWgmmaCounterCount zeros,
  // left zero by every call; one set per stream).
  int split = 0;
  float* split_partials = nullptr;
  int32_t* split_counters = nullptr;
  int sm_count = 0;  // for the rule; 0 queries the current device
};

inline constexpr int kW4A8FragmentWgmmaMaxSplit = 16;

// The split the rule takes: 1 above 128 rows or below 96 groups (measured: the .cc); else the
// fewest CTAs over K (at most 16, each at least 4 groups, none empty) that bring the tiles
// (ceil(m / tile) x ceil(n / 128)) to the SM count.
int ChooseW4A8FragmentWgmmaSplit(int64_t m, int64_t n, int64_t k, int64_t group_size, int sm_count);
// Workspace of a call: split * m * n floats (none at split 1), and counters for every tile of
// either token tile.
int64_t W4A8FragmentWgmmaPartialFloats(int64_t m, int64_t n, int split);
int64_t W4A8FragmentWgmmaCounterCount(int64_t m, int64_t n);

// Whether the fragment wgmma GEMM is the faster W4A8 kernel for an m x n x k problem of more than
// 32 rows (measured against the mid-M and prefill kernels on the H200; the .cc has the numbers).
bool W4A8FragmentWgmmaWins(int64_t m, int64_t n, int64_t k);

// Whether the kernel applies to a layer: k and group_size multiples of 128 and the 2^22 bound.
bool W4A8FragmentWgmmaApplies(int64_t k, int64_t group_size, bool has_zero_points);

// Validates (InvalidArgument naming the field, OutOfRange when int32 could overflow,
// FailedPrecondition off Hopper: wgmma exists only on sm_90a) and enqueues on `stream`. Allocates
// nothing; may be graph-captured.
absl::Status GemmW4A8FragmentWgmma(const DeviceW4A8FragmentWgmmaGemm& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
