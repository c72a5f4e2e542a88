// Element-wise sum of several same-sized device buffers into one: the reduction of an in-process
// all-reduce whose ranks share a GPU (worker/collectives/device_thread_group.h, for tests that run
// tensor parallelism on one device). out[i] = round(sum over r in rank order of
// float(inputs[r][i])), float32 additions in order 0, 1, ..., one rounding to the element type at
// the end (none for float32): every rank computing it gets the same bits.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/gemm_element_type.h"

namespace flatfleet::cuda {

inline constexpr int kMaxRankSumInputs = 16;

struct DeviceRankSum {
  int num_inputs = 0;                                // 1..kMaxRankSumInputs
  const void* inputs[kMaxRankSumInputs] = {};        // [count] each, device memory
  int64_t count = 0;                                 // >= 0 (0: nothing to do)
  GemmElementType type = GemmElementType::kFloat32;  // of inputs and output: float32 or bf16
  void* output = nullptr;  // [count]; must not overlap any input (it is read by other ranks)
};

// Validates (InvalidArgument naming the field) and enqueues on `stream`; any alignment; no host
// synchronisation.
absl::Status SumRanks(const DeviceRankSum& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
