// Seeded pseudo-random bf16 weights generated on the device (benchmarks of real model shapes
// without carrying or generating gigabytes on the host): element i of a fill is
// stddev * sqrt(3) * u, u uniform in [-1, 1) from a SplitMix64 hash of (seed, i). The same
// numbers come from kernels/cpu/random_fill.h, so a host model built from the same seeds is the
// same model.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"

namespace flatfleet::cuda {

struct DeviceRandomFill {
  __nv_bfloat16* out = nullptr;  // [count], device memory
  int64_t count = 0;
  uint64_t seed = 0;
  float stddev = 0.02f;
};

absl::Status RandomFillBf16(const DeviceRandomFill& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
