// Kernels of the INT8-compressed all-reduce on GPUs (host orchestration in
// worker/collectives/device_compressed_all_reducer.h). The numerics are those of the CPU
// reference (worker/collectives/int8_blocks.h, compressed_all_reduce_reference.h), bit for bit:
// scale = absmax / 127 (IEEE division), codes = clamp(rint(x / scale), -127, 127) with ties to
// even, dequantize float(q) * scale, and sums accumulated from +0.0f in rank order with separately
// rounded multiplies and adds (__fmul_rn / __fadd_rn, never an FMA).
//
// Data layout: N floats form B = ceil(N / block_size) blocks (the last may be shorter); rank r
// owns the whole blocks [r * B / n, (r + 1) * B / n). A message slot holds one chunk: its codes
// (block j of the chunk at byte j * block_size) and, from `scales_offset`, its float scales. All
// slots have the size of the largest chunk, so the exchanges are plain all-to-all / all-gather.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace flatfleet::cuda {

struct Int8ChunkLayout {
  int64_t num_elements = 0;
  int64_t num_blocks = 0;
  int32_t block_size = 0;
  int32_t num_ranks = 0;
  int64_t max_chunk_blocks = 0;
  int64_t scales_offset = 0;  // bytes, multiple of 16
  int64_t slot_bytes = 0;     // multiple of 16
};

#if defined(__CUDACC__)
#define FF_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FF_HOST_DEVICE inline
#endif

// First block of rank r's chunk (r == num_ranks gives num_blocks).
FF_HOST_DEVICE int64_t Int8ChunkBegin(const Int8ChunkLayout& layout, int64_t rank) {
  return rank * layout.num_blocks / layout.num_ranks;
}

// The rank whose chunk holds `block` (0 <= block < num_blocks): the largest r with
// Int8ChunkBegin(r) <= block, i.e. r * B / n <= block  <=>  r * B < (block + 1) * n.
FF_HOST_DEVICE int64_t Int8ChunkOwner(const Int8ChunkLayout& layout, int64_t block) {
  return ((block + 1) * layout.num_ranks - 1) / layout.num_blocks;
}

#undef FF_HOST_DEVICE

// Needs num_elements >= 0, block_size > 0 and num_ranks > 0 (the caller checks).
inline Int8ChunkLayout MakeInt8ChunkLayout(int64_t num_elements, int32_t block_size,
                                           int32_t num_ranks) {
  Int8ChunkLayout layout;
  layout.num_elements = num_elements;
  layout.block_size = block_size;
  layout.num_ranks = num_ranks;
  layout.num_blocks = (num_elements + block_size - 1) / block_size;
  for (int32_t r = 0; r < num_ranks; ++r) {
    layout.max_chunk_blocks = std::max(layout.max_chunk_blocks,
                                       Int8ChunkBegin(layout, r + 1) - Int8ChunkBegin(layout, r));
  }
  const auto round_up_16 = [](int64_t bytes) { return (bytes + 15) / 16 * 16; };
  layout.scales_offset = round_up_16(layout.max_chunk_blocks * block_size);
  layout.slot_bytes =
      layout.scales_offset + round_up_16(layout.max_chunk_blocks * int64_t{sizeof(float)});
  return layout;
}

// Indices into the device status words the kernels raise (set to 1, never cleared by them).
inline constexpr int kStatusNonFiniteInput = 0;    // this rank's input had a NaN or infinity
inline constexpr int kStatusNonFiniteReduced = 1;  // a reduced block was not finite (any rank)
inline constexpr int kStatusWords = 2;

// Raw launchers; they check nothing (the reducer validates sizes and pointers). `status` (device
// pointer to kStatusWords int32, may be null) reports non-finite values; such a block is carried
// on with scale NaN and codes 0, so every rank's output for it is NaN and every rank notices.

// x: [num_elements] float; slots: num_ranks slots. Quantizes block b into the slot of its owner.
cudaError_t LaunchQuantizeIntoSlots(const float* x, const Int8ChunkLayout& layout, uint8_t* slots,
                                    int32_t* status, cudaStream_t stream);

// received: num_ranks slots, slot s holding rank s's codes and scales of `rank`'s chunk. Sums them
// in rank order and requantizes into reduced_slot (one slot).
cudaError_t LaunchReduceAndRequantize(const uint8_t* received, const Int8ChunkLayout& layout,
                                      int32_t rank, uint8_t* reduced_slot, cudaStream_t stream);

// gathered: num_ranks slots of reduced chunks in rank order. Writes out[i] = float(q) * scale.
cudaError_t LaunchDequantizeSlots(const uint8_t* gathered, const Int8ChunkLayout& layout,
                                  float* out, int32_t* status, cudaStream_t stream);

}  // namespace flatfleet::cuda
