// The fragment layout of INT4 weights that W4A8FragmentGemm (w4a8_fragment_gemm.h) streams: the
// interleaved INT4 words (kernels/cpu/quant/int4_interleaved.h) permuted so that one 16-byte load
// gives a lane its A operands of two m16n8k32 MMAs, and a warp's load is 512 contiguous bytes.
//
// Words: [n_blocks = ceil(n / 16)][k / 64 chunks][32 lanes][4], lane l = 4 g + t. Word q of lane l
// of chunk c of block b is interleaved word 8 c + t + 4 (q / 2) (K elements 64 c + 32 (q / 2) +
// 8 t + 0..7) of weight row 16 b + g + 8 (q % 2), zero past n. Unpacked (low nibbles, high
// nibbles), words 0 and 1 are the A registers {a0, a2} and {a1, a3} of the chunk's first MMA,
// words 2 and 3 those of its second: the MMA's k slots 4t..4t+3 and 16+4t..16+4t+3 hold K
// elements 8t + 0..3 and 8t + 4..7 of the 32-element half, so the B operand (the activations) is
// the 8 consecutive bytes at 8 t. Within a group the integer sum does not depend on the order.
//
// Scales: [n_blocks][groups][8 groups of lanes g] uint2: x = FP16 bits of s_w[16 b + g] |
// s_w[16 b + g + 8] << 16, y = the zero points' bytes (signed convention, 0 when symmetric) z[16 b
// + g] | z[16 b + g + 8] << 8. Zeros past n.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

#if defined(__CUDACC__)
#define FF_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FF_HOST_DEVICE inline
#endif

namespace flatfleet::cuda {

FF_HOST_DEVICE int64_t W4A8FragmentBlocks(int64_t n) { return (n + 15) / 16; }
// uint32 words of the weights and of the scales (k a multiple of 64, groups = k / group_size).
FF_HOST_DEVICE int64_t W4A8FragmentWordCount(int64_t n, int64_t k) {
  return W4A8FragmentBlocks(n) * (k / 64) * 128;
}
FF_HOST_DEVICE int64_t W4A8FragmentScaleWordCount(int64_t n, int64_t k, int64_t group_size) {
  return W4A8FragmentBlocks(n) * (k / group_size) * 16;
}

// Where fragment word `index` comes from: interleaved word `word` of weight row `row` (row may be
// >= n: the word is zero).
struct W4A8FragmentSourceWord {
  int64_t row;
  int64_t word;
};
FF_HOST_DEVICE W4A8FragmentSourceWord W4A8FragmentSource(int64_t index, int64_t k) {
  const int64_t q = index % 4;
  const int64_t lane = (index / 4) % 32;
  const int64_t chunk = (index / 128) % (k / 64);
  const int64_t block = index / 128 / (k / 64);
  const int64_t g = lane / 4, t = lane % 4;
  return {.row = 16 * block + g + 8 * (q % 2), .word = 8 * chunk + t + 4 * (q / 2)};
}

// Scale entry `index` (of W4A8FragmentBlocks(n) * groups * 8) from row-major [n, groups] FP16
// scale bits and zero points (or null): the two words of the layout's uint2, zero past n. The
// device repack and the host one (tests) both build their entries here.
struct W4A8FragmentScaleEntry {
  uint32_t scales = 0;  // FP16 bits of rows lo | hi << 16
  uint32_t zeros = 0;   // zero-point bytes of rows lo | hi << 8
};
FF_HOST_DEVICE W4A8FragmentScaleEntry MakeW4A8FragmentScaleEntry(int64_t index, int64_t n,
                                                                 int64_t groups,
                                                                 const uint16_t* scales,
                                                                 const int8_t* zero_points) {
  const int64_t g = index % 8, group = (index / 8) % groups, block = index / 8 / groups;
  W4A8FragmentScaleEntry entry;
  for (int half = 0; half < 2; ++half) {
    const int64_t row = 16 * block + g + 8 * half;
    if (row >= n) continue;
    entry.scales |= static_cast<uint32_t>(scales[row * groups + group]) << (16 * half);
    if (zero_points != nullptr) {
      entry.zeros |= static_cast<uint32_t>(static_cast<uint8_t>(zero_points[row * groups + group]))
                     << (8 * half);
    }
  }
  return entry;
}

// The weights of a W4A8 layer in the layout the other W4A8 GEMMs read (device pointers).
struct DeviceW4A8Source {
  int64_t n = 0, k = 0, group_size = 0;  // k a multiple of 64, group_size dividing k
  const uint32_t* words = nullptr;       // [n, k / 8] interleaved INT4 words
  const uint16_t* scales = nullptr;      // [n, k / group_size] FP16 bits
  const int8_t* zero_points = nullptr;   // [n, k / group_size] or null (symmetric)
};

// Writes the fragment layout of `source` into `fragments` (W4A8FragmentWordCount words, 16-byte
// aligned) and `fragment_scales` (W4A8FragmentScaleWordCount words, 8-byte aligned) on `stream`.
// InvalidArgument naming the field for a shape the layout cannot hold or a null pointer.
absl::Status PackW4A8Fragments(const DeviceW4A8Source& source, uint32_t* fragments,
                               uint32_t* fragment_scales, cudaStream_t stream);

// The same on the host (tests): from PackedInt4Matrix-style words and the group scales / zero
// points, both layouts' vectors.
struct HostW4A8Fragments {
  std::vector<uint32_t> words;
  std::vector<uint32_t> scales;
};
HostW4A8Fragments PackW4A8FragmentsOnHost(int64_t n, int64_t k, int64_t group_size,
                                          const std::vector<uint32_t>& words,
                                          const std::vector<uint16_t>& scales,
                                          const std::vector<int8_t>& zero_points);

}  // namespace flatfleet::cuda

#undef FF_HOST_DEVICE
