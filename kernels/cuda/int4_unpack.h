// INT4 -> INT8 unpack used by the W4A8 GEMM, shared with host tests (no CUDA types needed).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FF_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FF_HOST_DEVICE inline
#endif

namespace flatfleet::cuda {

// Nibble flips: each byte becomes 128 + (code + 8). Signed nibbles are two's complement (xor 8
// maps them to code + 8); unsigned nibbles already hold code + 8.
inline constexpr uint32_t kSignedNibbleFlip = 0x88888888u;
inline constexpr uint32_t kUnsignedNibbleFlip = 0x80808080u;

// Zero point (signed convention, -8..7; 0 when symmetric) replicated as zero + 8 in every byte.
FF_HOST_DEVICE uint32_t ZeroPlus8x4(int32_t zero) {
  return static_cast<uint32_t>(static_cast<uint8_t>(zero + 8)) * 0x01010101u;
}

// Four nibbles (one per byte, already masked with 0x0F0F0F0F) to four int8 values code - zero
// in [-15, 15]: the byte-wise difference (128 + code + 8) - (zero + 8) stays in [113, 143], so no
// borrow crosses bytes, and xor 0x80 turns it into the two's-complement byte of code - zero.
FF_HOST_DEVICE uint32_t CenteredInt8x4(uint32_t nibbles, uint32_t flip, uint32_t zero_plus_8) {
  return ((nibbles ^ flip) - zero_plus_8) ^ 0x80808080u;
}

}  // namespace flatfleet::cuda

#undef FF_HOST_DEVICE
