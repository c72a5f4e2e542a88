// Which all-reduce a tensor-parallel rank runs for a message: plain (NCCL in the activation type,
// or Gloo FP32) or the INT8-compressed one (compressed_all_reducer.h, lossy). Chosen from a table
// of measured crossovers, not a flag default: compression is used only where it measured faster.
#pragma once

#include <cstdint>
#include <span>

namespace flatfleet::collectives {

enum class AllReduceAlgorithm {
  kPlain,  // NCCL sum in the data's type (bf16 or float32): exact up to its roundings
  // Per-block INT8 (scale = block absmax / 127), lossy: per element,
  // |out - exact sum| <= sum over ranks of scale_r / 2 + scale_reduced / 2, i.e. about
  // (ranks + 1) / 254 of the block's largest magnitude (compressed_all_reduce_reference.h).
  kInt8Compressed,
};

// One measured row: from `min_fp32_bytes` per rank upwards (until the next row), on a group of
// `ranks` GPUs, the faster algorithm.
struct AllReduceThreshold {
  int ranks = 2;
  int64_t min_fp32_bytes = 0;
  AllReduceAlgorithm algorithm = AllReduceAlgorithm::kPlain;
};

// bench/RESULTS.md, "All-reduce on 2 GPUs: NCCL FP32 vs the INT8-compressed all-reduce"
// (2x H200 NV18, NCCL 2.28.3, two runs): compressed was 2.7-1.4x slower from 64 KiB to 16 MiB,
// 0.99x / 1.09x (run 1 / run 2) at 64 MiB and 0.94x / 0.93x at 256 MiB. So plain below 256 MiB,
// compressed from 256 MiB (the only size faster in both runs). No other group size was measured.
std::span<const AllReduceThreshold> MeasuredDeviceAllReduceThresholds();

// The algorithm for a device all-reduce of `fp32_bytes` per rank (the message's size in float32,
// the unit of the table) on `ranks` GPUs. kPlain unless compression is allowed (the request's
// all_reduce_compression) and the table measured it faster for this group size and message size;
// unmeasured group sizes get kPlain.
AllReduceAlgorithm ChooseDeviceAllReduce(
    int64_t fp32_bytes, int ranks, bool compression_allowed,
    std::span<const AllReduceThreshold> table = MeasuredDeviceAllReduceThresholds());

}  // namespace flatfleet::collectives
