// The W4A8 kernel's in-register INT4 -> INT8 unpack (kernels/cuda/int4_unpack.h) against the CPU
// layout reference (kernels/cpu/quant/int4_interleaved.h). Host-only: runs without a GPU.
#include "kernels/cuda/int4_unpack.h"

#include <cstdint>
#include <random>

#include "gtest/gtest.h"
#include "kernels/cpu/quant/int4_interleaved.h"

namespace flatfleet::cuda {
namespace {

using quant::Signedness;

int8_t Byte(uint32_t word, int index) { return static_cast<int8_t>(word >> (8 * index)); }

// Every zero point, both nibble conventions, every nibble value in every byte lane (the other
// lanes random, so a borrow across bytes would show).
TEST(Int4UnpackTest, CenteredBytesEqualCodeMinusZeroForEveryNibbleAndZero) {
  std::mt19937 rng(2024);
  std::uniform_int_distribution<uint32_t> any_word;
  for (Signedness signedness : {Signedness::kSigned, Signedness::kUnsigned}) {
    const uint32_t flip =
        signedness == Signedness::kSigned ? kSignedNibbleFlip : kUnsignedNibbleFlip;
    const int32_t stored_offset = signedness == Signedness::kSigned ? 0 : 8;
    for (int32_t zero = -8; zero <= 7; ++zero) {
      for (int lane = 0; lane < 8; ++lane) {
        for (uint32_t nibble = 0; nibble < 16; ++nibble) {
          uint32_t word = any_word(rng);
          word = (word & ~(0xfu << (4 * lane))) | (nibble << (4 * lane));
          const quant::Int8x4Pair reference = quant::UnpackInt4WordToInt8x4(word, signedness);
          const uint32_t low = CenteredInt8x4(word & 0x0f0f0f0fu, flip, ZeroPlus8x4(zero));
          const uint32_t high = CenteredInt8x4((word >> 4) & 0x0f0f0f0fu, flip, ZeroPlus8x4(zero));
          for (int byte = 0; byte < 4; ++byte) {
            // The reference yields stored values (code, or code + 8 when unsigned).
            const int32_t low_code = (signedness == Signedness::kSigned
                                          ? Byte(reference.low, byte)
                                          : static_cast<uint8_t>(reference.low >> (8 * byte))) -
                                     stored_offset;
            const int32_t high_code = (signedness == Signedness::kSigned
                                           ? Byte(reference.high, byte)
                                           : static_cast<uint8_t>(reference.high >> (8 * byte))) -
                                      stored_offset;
            ASSERT_EQ(Byte(low, byte), low_code - zero)
                << "word " << word << " byte " << byte << " zero " << zero;
            ASSERT_EQ(Byte(high, byte), high_code - zero)
                << "word " << word << " byte " << byte << " zero " << zero;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace flatfleet::cuda
