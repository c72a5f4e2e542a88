#include "kernels/cpu/quant/bit_packing.h"

#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/quant/int4_interleaved.h"
#include "kernels/cpu/quant/packed_int4_matrix.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

class BitPackingTest : public test_util::RandomTest {
 protected:
  std::vector<int32_t> RandomValues(int64_t count, int bits, Signedness signedness) {
    std::vector<int32_t> values(count);
    for (int32_t& v : values) {
      v = static_cast<int32_t>(
          UniformInt(MinStorable(bits, signedness), MaxStorable(bits, signedness)));
    }
    // Make sure both extremes are exercised.
    values[0] = MinStorable(bits, signedness);
    values[count - 1] = MaxStorable(bits, signedness);
    return values;
  }
};

// The in-place packer of 8-bit codes (stored checkpoints, rows packed in parallel) writes
// PackBitstream's bytes exactly, over whatever the buffer held, and rejects what it rejects.
TEST_F(BitPackingTest, BitstreamIntoEqualsBitstream) {
  for (int bits = 2; bits <= 8; ++bits) {
    for (Signedness signedness : {Signedness::kSigned, Signedness::kUnsigned}) {
      if (signedness == Signedness::kUnsigned && bits == 8) continue;  // 255 is no int8
      SCOPED_TRACE(::testing::Message()
                   << bits << " bits, signed=" << (signedness == Signedness::kSigned));
      const int64_t count = UniformInt(1, 300);
      const std::vector<int32_t> values = RandomValues(count, bits, signedness);
      const std::vector<int8_t> narrow(values.begin(), values.end());
      auto expected = PackBitstream(values, bits, signedness);
      ASSERT_TRUE(expected.ok()) << expected.status();
      std::vector<uint8_t> out(expected->size(), 0xa5);  // stale bytes must not leak through
      ASSERT_TRUE(PackBitstreamInto(narrow, bits, signedness, out).ok());
      EXPECT_EQ(out, *expected);
      std::vector<uint8_t> wrong(expected->size() + 1);
      EXPECT_FALSE(PackBitstreamInto(narrow, bits, signedness, wrong).ok());
    }
  }
  std::vector<uint8_t> one(1);
  const auto too_big = PackBitstreamInto(std::vector<int8_t>{8}, 4, Signedness::kSigned, one);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.message(),
            PackBitstream(std::vector<int32_t>{8}, 4, Signedness::kSigned).status().message());
  EXPECT_FALSE(PackBitstreamInto(std::vector<int8_t>{-1}, 4, Signedness::kUnsigned, one).ok());
  EXPECT_FALSE(PackBitstreamInto(std::vector<int8_t>{0}, 9, Signedness::kSigned, one).ok());
}

TEST_F(BitPackingTest, BitstreamRoundTripsEveryWidthAndSign) {
  for (int bits = 2; bits <= 8; ++bits) {
    for (Signedness signedness : {Signedness::kSigned, Signedness::kUnsigned}) {
      SCOPED_TRACE(::testing::Message()
                   << bits << " bits, signed=" << (signedness == Signedness::kSigned));
      const int64_t count = UniformInt(1, 300) + 1;
      const std::vector<int32_t> values = RandomValues(count, bits, signedness);
      auto packed = PackBitstream(values, bits, signedness);
      ASSERT_TRUE(packed.ok()) << packed.status();
      EXPECT_EQ(packed->size(), static_cast<size_t>((count * bits + 7) / 8));
      auto unpacked = UnpackBitstream(*packed, count, bits, signedness);
      ASSERT_TRUE(unpacked.ok()) << unpacked.status();
      EXPECT_EQ(*unpacked, values);
    }
  }
}

TEST_F(BitPackingTest, WordsRoundTripEveryWidthAndSign) {
  for (int bits = 2; bits <= 8; ++bits) {
    for (Signedness signedness : {Signedness::kSigned, Signedness::kUnsigned}) {
      SCOPED_TRACE(::testing::Message() << bits << " bits");
      const int64_t count = UniformInt(1, 300) + 1;
      const std::vector<int32_t> values = RandomValues(count, bits, signedness);
      auto packed = PackWords(values, bits, signedness);
      ASSERT_TRUE(packed.ok()) << packed.status();
      const int per_word = ElementsPerWord(bits);
      EXPECT_EQ(packed->size(), static_cast<size_t>((count + per_word - 1) / per_word));
      auto unpacked = UnpackWords(*packed, count, bits, signedness);
      ASSERT_TRUE(unpacked.ok()) << unpacked.status();
      EXPECT_EQ(*unpacked, values);
    }
  }
}

TEST(BitPackingLayout, Int4BitstreamPutsTheEvenElementInTheLowNibble) {
  auto packed = PackBitstream(std::vector<int32_t>{3, -2, 7, -8}, 4, Signedness::kSigned);
  ASSERT_TRUE(packed.ok());
  EXPECT_EQ(*packed, (std::vector<uint8_t>{0xe3, 0x87}));
}

TEST(BitPackingLayout, ThreeBitFieldsStraddleBytesLeastSignificantFirst) {
  // 5 = 101b, 6 = 110b, 7 = 111b -> stream bits (LSB first) 101 011 111 -> bytes 0xF5, 0x01.
  auto packed = PackBitstream(std::vector<int32_t>{5, 6, 7}, 3, Signedness::kUnsigned);
  ASSERT_TRUE(packed.ok());
  EXPECT_EQ(*packed, (std::vector<uint8_t>{0xf5, 0x01}));
}

TEST(BitPackingErrors, RejectsValuesOutsideTheWidthAndBadWidths) {
  EXPECT_FALSE(PackBitstream(std::vector<int32_t>{8}, 4, Signedness::kSigned).ok());
  EXPECT_FALSE(PackBitstream(std::vector<int32_t>{-1}, 4, Signedness::kUnsigned).ok());
  EXPECT_FALSE(PackWords(std::vector<int32_t>{4}, 2, Signedness::kUnsigned).ok());
  EXPECT_FALSE(PackBitstream(std::vector<int32_t>{0}, 9, Signedness::kSigned).ok());
  EXPECT_FALSE(PackBitstream(std::vector<int32_t>{0}, 1, Signedness::kSigned).ok());
  EXPECT_FALSE(UnpackBitstream(std::vector<uint8_t>{0}, 3, 4, Signedness::kSigned).ok());
}

TEST_F(BitPackingTest, Int4InterleavedRoundTripsBothSigns) {
  for (Signedness signedness : {Signedness::kSigned, Signedness::kUnsigned}) {
    const std::vector<int32_t> values = RandomValues(8 * UniformInt(1, 64), 4, signedness);
    auto packed = PackInt4Interleaved(values, signedness);
    ASSERT_TRUE(packed.ok()) << packed.status();
    EXPECT_EQ(packed->size(), values.size() / 8);
    EXPECT_EQ(UnpackInt4Interleaved(*packed, signedness), values);
  }
}

TEST(Int4InterleavedLayout, MasksYieldInt8LanesInOrder) {
  const std::vector<int32_t> values = {0, 1, 2, 3, -1, -2, -7, -8};
  auto packed = PackInt4Interleaved(values, Signedness::kSigned);
  ASSERT_TRUE(packed.ok());
  ASSERT_EQ(packed->size(), 1u);
  // Byte j = e_j | e_{j+4} << 4: 0xF0, 0xE1, 0x92, 0x83.
  EXPECT_EQ((*packed)[0], 0x8392e1f0u);
  const Int8x4Pair lanes = UnpackInt4WordToInt8x4((*packed)[0], Signedness::kSigned);
  EXPECT_EQ(lanes.low, 0x03020100u);   // 0, 1, 2, 3 as int8
  EXPECT_EQ(lanes.high, 0xf8f9feffu);  // -1, -2, -7, -8 as int8
  EXPECT_FALSE(PackInt4Interleaved(std::vector<int32_t>(7, 0), Signedness::kSigned).ok());
}

TEST_F(BitPackingTest, QuantizedInt4MatricesRoundTripThroughTheGpuLayout) {
  for (bool symmetric : {true, false}) {
    const int64_t rows = UniformInt(1, 6), cols = 8 * UniformInt(1, 32);
    auto q = QuantizeRtn(Gaussian(rows * cols), rows, cols, {.bits = 4, .symmetric = symmetric});
    ASSERT_TRUE(q.ok());
    auto packed = PackInt4Matrix(*q);
    ASSERT_TRUE(packed.ok()) << packed.status();
    EXPECT_EQ(packed->words.size(), static_cast<size_t>(rows * cols / 8));
    EXPECT_EQ(UnpackInt4MatrixCodes(*packed), q->codes);
  }
  auto eight_bit = QuantizeRtn(Gaussian(16), 1, 16, {.bits = 8});
  ASSERT_TRUE(eight_bit.ok());
  EXPECT_FALSE(PackInt4Matrix(*eight_bit).ok());
}

}  // namespace
}  // namespace flatfleet::quant
