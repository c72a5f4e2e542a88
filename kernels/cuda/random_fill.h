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

// Seeded symmetric integer weight codes (benchmarks of the quantized formats): bits 8 fills
// `count` int8 codes in [-127, 127]; bits 4 fills `count` 32-bit words of eight 4-bit two's
// complement codes in [-7, 7] (the layout is irrelevant for uniform codes). Element i draws from
// the same hash as RandomFillBf16.
struct DeviceRandomCodes {
  void* out = nullptr;  // int8_t[count] (bits 8) or uint32_t[count] (bits 4), device memory
  int64_t count = 0;
  uint64_t seed = 0;
  int bits = 8;  // 8 or 4
};
absl::Status RandomFillCodes(const DeviceRandomCodes& args, cudaStream_t stream);

// Seeded FP16 scales center * (1 + spread * u), u uniform in [-1, 1).
struct DeviceRandomScales {
  uint16_t* out = nullptr;  // FP16 bits [count], device memory
  int64_t count = 0;
  uint64_t seed = 0;
  float center = 1.0f;   // > 0
  float spread = 0.25f;  // in [0, 1)
};
absl::Status RandomFillScales(const DeviceRandomScales& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
