// Packing of b-bit integers (b = 2..8) into bytes and 32-bit words, and back.
//
// Two general layouts (see docs/QUANT_FORMATS.md):
//   * Bitstream: element i occupies bits [i*b, (i+1)*b) of a little-endian bitstream (byte k holds
//     stream bits 8k..8k+7, least significant bit first). Elements may straddle bytes. For b = 4
//     this is "two per byte, element 2i in the low nibble, 2i+1 in the high nibble".
//   * Words: each uint32 holds floor(32 / b) elements, element j of the word at bits [j*b,
//   (j+1)*b);
//     elements never straddle words, so a GPU thread unpacks a word with shifts and masks only.
// Signed values are stored as b-bit two's complement and sign-extended on unpack; unsigned values
// are stored as they are.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace flatfleet::quant {

enum class Signedness { kSigned, kUnsigned };

// Smallest and largest storable value for `bits` in `signedness` (two's complement when signed).
int32_t MinStorable(int bits, Signedness signedness);
int32_t MaxStorable(int bits, Signedness signedness);

// Errors: bits outside 2..8, or a value outside [MinStorable, MaxStorable] (the error names it).
absl::StatusOr<std::vector<uint8_t>> PackBitstream(std::span<const int32_t> values, int bits,
                                                   Signedness signedness);
// PackBitstream's bytes for 8-bit `values` (a stored matrix's codes), written into `out`, which
// must hold exactly ceil(values.size() * bits / 8) bytes: no allocation and no widening, so the
// rows of a matrix can be packed in place in parallel. The same errors as PackBitstream.
absl::Status PackBitstreamInto(std::span<const int8_t> values, int bits, Signedness signedness,
                               std::span<uint8_t> out);
// `count` elements are read; `bytes` must hold at least ceil(count * bits / 8) bytes.
absl::StatusOr<std::vector<int32_t>> UnpackBitstream(std::span<const uint8_t> bytes, int64_t count,
                                                     int bits, Signedness signedness);

absl::StatusOr<std::vector<uint32_t>> PackWords(std::span<const int32_t> values, int bits,
                                                Signedness signedness);
absl::StatusOr<std::vector<int32_t>> UnpackWords(std::span<const uint32_t> words, int64_t count,
                                                 int bits, Signedness signedness);

// Elements per 32-bit word in the word layout: floor(32 / bits).
int ElementsPerWord(int bits);

}  // namespace flatfleet::quant
