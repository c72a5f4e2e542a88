// The GPU layout of INT4 operands: 8 consecutive elements (along K) per 32-bit word, interleaved so
// that unpacking to INT8 costs two mask operations per word (QServe-style; Hopper multiplies INT4
// data as INT8).
//
// For elements e0..e7 of a block, byte j (j = 0..3, little endian) of the word holds
//   low nibble  = e_j,   high nibble = e_{j+4}.
// So `word & 0x0F0F0F0F` yields e0..e3 as four bytes in order and `(word >> 4) & 0x0F0F0F0F`
// yields e4..e7: each is an int8x4 register ready for an INT8 MMA/dp4a once sign-extended
// (signed: per byte (n ^ 8) - 8, e.g. __vsub4(n ^ 0x08080808, 0x08080808)).
// Values are stored as 4-bit two's complement (signed) or as is (unsigned).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/quant/bit_packing.h"

namespace flatfleet::quant {

inline constexpr int kInt4PerWord = 8;

// `values.size()` must be a multiple of 8 and every value must fit 4 bits in `signedness`.
absl::StatusOr<std::vector<uint32_t>> PackInt4Interleaved(std::span<const int32_t> values,
                                                          Signedness signedness);
std::vector<int32_t> UnpackInt4Interleaved(std::span<const uint32_t> words, Signedness signedness);

// What the GPU does with one word: the eight elements as two int8x4 registers (e0..e3, e4..e7),
// each little-endian packed into a uint32, sign-extended when signed.
struct Int8x4Pair {
  uint32_t low;
  uint32_t high;
};
Int8x4Pair UnpackInt4WordToInt8x4(uint32_t word, Signedness signedness);

}  // namespace flatfleet::quant
