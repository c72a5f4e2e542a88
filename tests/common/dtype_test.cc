#include "common/dtype.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "gtest/gtest.h"

namespace flatfleet {
namespace {

TEST(DTypeTest, NamesRoundTrip) {
  for (DType dtype : {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kI64,
                      DType::kI32, DType::kI16, DType::kI8, DType::kU8, DType::kBool}) {
    auto parsed = ParseDType(DTypeName(dtype));
    ASSERT_TRUE(parsed.has_value()) << DTypeName(dtype);
    EXPECT_EQ(*parsed, dtype);
    EXPECT_GT(DTypeSize(dtype), 0u);
  }
  EXPECT_FALSE(ParseDType("F8_E4M3X").has_value());
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kI64), 8u);
}

TEST(DTypeTest, HalfRoundTripsEveryFiniteValue) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const uint16_t h = static_cast<uint16_t>(bits);
    const bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
    float f = HalfToFloat(h);
    if (is_nan) {
      EXPECT_TRUE(std::isnan(f));
      continue;
    }
    EXPECT_EQ(FloatToHalf(f), h) << "bits " << bits;
  }
}

TEST(DTypeTest, HalfRoundsToNearestEven) {
  EXPECT_EQ(HalfToFloat(FloatToHalf(1.0f + 1.0f / 2048.0f)), 1.0f);  // tie, even is 1.0
  EXPECT_EQ(HalfToFloat(FloatToHalf(1.0f + 3.0f / 2048.0f)), 1.0f + 2.0f / 1024.0f);
  EXPECT_EQ(FloatToHalf(70000.0f), 0x7c00);
  EXPECT_EQ(FloatToHalf(-70000.0f), 0xfc00);
  EXPECT_EQ(FloatToHalf(1e-9f), 0x0000);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));
}

TEST(DTypeTest, HalfConversionIsWithinHalfAnUlpOnRandomValues) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-60000.0f, 60000.0f);
  for (int i = 0; i < 100000; ++i) {
    float x = dist(rng) * std::pow(2.0f, -static_cast<float>(i % 30));
    float y = HalfToFloat(FloatToHalf(x));
    float ulp = std::max(std::ldexp(1.0f, std::ilogb(std::fabs(x)) - 10), std::ldexp(1.0f, -24));
    EXPECT_LE(std::fabs(x - y), 0.5f * ulp + 1e-30f) << x;
  }
}

TEST(DTypeTest, BFloat16RoundTripAndRounding) {
  for (uint32_t bits = 0; bits < 0x10000; bits += 7) {
    const uint16_t b = static_cast<uint16_t>(bits);
    float f = BF16ToFloat(b);
    if (std::isnan(f)) continue;
    EXPECT_EQ(FloatToBF16(f), b);
  }
  EXPECT_EQ(BF16ToFloat(FloatToBF16(1.0f + 1.0f / 256.0f)), 1.0f);  // tie to even
  EXPECT_TRUE(std::isnan(BF16ToFloat(FloatToBF16(std::numeric_limits<float>::quiet_NaN()))));
}

}  // namespace
}  // namespace flatfleet
