// Element types of stored tensors and conversions of the 16-bit float formats.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace flatfleet {

enum class DType : uint8_t {
  kF64,
  kF32,
  kF16,
  kBF16,
  kI64,
  kI32,
  kI16,
  kI8,
  kU8,
  kBool,
};

// Size of one element in bytes.
size_t DTypeSize(DType dtype);
// The safetensors spelling ("F32", "BF16", ...).
std::string_view DTypeName(DType dtype);
// Parses the safetensors spelling; nullopt for anything unknown.
std::optional<DType> ParseDType(std::string_view name);

inline float BF16ToFloat(uint16_t bits) {
  uint32_t widened = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &widened, sizeof(value));
  return value;
}

// Round-to-nearest-even, NaN preserved (as PyTorch does).
inline uint16_t FloatToBF16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  uint32_t rounding_bias = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding_bias) >> 16);
}

float HalfToFloat(uint16_t bits);
// Round-to-nearest-even IEEE binary16 with overflow to infinity.
uint16_t FloatToHalf(float value);

}  // namespace flatfleet
