#include "kernels/cpu/quant/int4_interleaved.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace flatfleet::quant {
namespace {

// SIMD-within-a-register sign extension of four nibbles held in the low halves of four bytes:
// (n ^ 8) - 8 per byte, without borrows across bytes (each byte of (n ^ 8) is >= 0 and the
// subtraction is done per byte with 8-bit wrap-around).
uint32_t SignExtendNibbleBytes(uint32_t nibbles) {
  uint32_t result = 0;
  for (int byte = 0; byte < 4; ++byte) {
    const uint32_t n = (nibbles >> (8 * byte)) & 0xfu;
    const uint32_t extended = static_cast<uint8_t>(static_cast<int32_t>(n ^ 8u) - 8);
    result |= extended << (8 * byte);
  }
  return result;
}

}  // namespace

absl::StatusOr<std::vector<uint32_t>> PackInt4Interleaved(std::span<const int32_t> values,
                                                          Signedness signedness) {
  if (values.size() % kInt4PerWord != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("INT4 interleaved packing needs a multiple of 8 values, got ", values.size()));
  }
  const int32_t lo = MinStorable(4, signedness);
  const int32_t hi = MaxStorable(4, signedness);
  std::vector<uint32_t> words(values.size() / kInt4PerWord, 0);
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] < lo || values[i] > hi) {
      return absl::OutOfRangeError(
          absl::StrCat("value ", values[i], " at index ", i, " does not fit 4 bits"));
    }
    const uint32_t nibble = static_cast<uint32_t>(values[i]) & 0xfu;
    const int in_block = static_cast<int>(i % kInt4PerWord);
    const int byte = in_block % 4;
    const int shift = 8 * byte + (in_block < 4 ? 0 : 4);
    words[i / kInt4PerWord] |= nibble << shift;
  }
  return words;
}

Int8x4Pair UnpackInt4WordToInt8x4(uint32_t word, Signedness signedness) {
  const uint32_t low = word & 0x0f0f0f0fu;
  const uint32_t high = (word >> 4) & 0x0f0f0f0fu;
  if (signedness == Signedness::kUnsigned) return {low, high};
  return {SignExtendNibbleBytes(low), SignExtendNibbleBytes(high)};
}

std::vector<int32_t> UnpackInt4Interleaved(std::span<const uint32_t> words, Signedness signedness) {
  std::vector<int32_t> values;
  values.reserve(words.size() * kInt4PerWord);
  for (uint32_t word : words) {
    const Int8x4Pair pair = UnpackInt4WordToInt8x4(word, signedness);
    for (uint32_t reg : {pair.low, pair.high}) {
      for (int byte = 0; byte < 4; ++byte) {
        const uint8_t lane = static_cast<uint8_t>(reg >> (8 * byte));
        values.push_back(signedness == Signedness::kSigned ? static_cast<int8_t>(lane) : lane);
      }
    }
  }
  return values;
}

}  // namespace flatfleet::quant
