#include "kernels/cpu/quant/bit_packing.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace flatfleet::quant {
namespace {

absl::Status CheckBits(int bits) {
  if (bits < 2 || bits > 8)
    return absl::InvalidArgumentError(absl::StrCat("bits must be in 2..8, got ", bits));
  return absl::OkStatus();
}

template <typename T>
absl::Status CheckValues(std::span<const T> values, int bits, Signedness signedness) {
  const int32_t lo = MinStorable(bits, signedness);
  const int32_t hi = MaxStorable(bits, signedness);
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] < lo || values[i] > hi) {
      return absl::OutOfRangeError(absl::StrCat("value ", int32_t{values[i]}, " at index ", i,
                                                " does not fit ", bits, " bits (range ", lo, "..",
                                                hi, ")"));
    }
  }
  return absl::OkStatus();
}

uint32_t FieldMask(int bits) { return (1u << bits) - 1u; }

// Turns a stored b-bit field back into a value: sign extension for signed fields.
int32_t FieldToValue(uint32_t field, int bits, Signedness signedness) {
  if (signedness == Signedness::kUnsigned) return static_cast<int32_t>(field);
  const uint32_t sign_bit = 1u << (bits - 1);
  return static_cast<int32_t>(field ^ sign_bit) - static_cast<int32_t>(sign_bit);
}

}  // namespace

int32_t MinStorable(int bits, Signedness signedness) {
  return signedness == Signedness::kSigned ? -(1 << (bits - 1)) : 0;
}

int32_t MaxStorable(int bits, Signedness signedness) {
  return signedness == Signedness::kSigned ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
}

int ElementsPerWord(int bits) { return 32 / bits; }

absl::StatusOr<std::vector<uint8_t>> PackBitstream(std::span<const int32_t> values, int bits,
                                                   Signedness signedness) {
  if (auto status = CheckBits(bits); !status.ok()) return status;
  if (auto status = CheckValues(values, bits, signedness); !status.ok()) return status;
  const int64_t total_bits = static_cast<int64_t>(values.size()) * bits;
  std::vector<uint8_t> bytes((total_bits + 7) / 8, 0);
  for (size_t i = 0; i < values.size(); ++i) {
    const uint32_t field = static_cast<uint32_t>(values[i]) & FieldMask(bits);
    const int64_t bit = static_cast<int64_t>(i) * bits;
    // A field spans at most two bytes since bits <= 8.
    const uint32_t shifted = field << (bit % 8);
    bytes[bit / 8] |= static_cast<uint8_t>(shifted & 0xffu);
    if (shifted > 0xffu) bytes[bit / 8 + 1] |= static_cast<uint8_t>(shifted >> 8);
  }
  return bytes;
}

absl::Status PackBitstreamInto(std::span<const int8_t> values, int bits, Signedness signedness,
                               std::span<uint8_t> out) {
  if (auto status = CheckBits(bits); !status.ok()) return status;
  if (auto status = CheckValues(values, bits, signedness); !status.ok()) return status;
  const int64_t total_bits = static_cast<int64_t>(values.size()) * bits;
  if (static_cast<int64_t>(out.size()) != (total_bits + 7) / 8) {
    return absl::InvalidArgumentError(absl::StrCat(values.size(), " values of ", bits,
                                                   " bits need ", (total_bits + 7) / 8,
                                                   " bytes, not ", out.size()));
  }
  std::fill(out.begin(), out.end(), uint8_t{0});
  for (size_t i = 0; i < values.size(); ++i) {
    const uint32_t field = static_cast<uint32_t>(int32_t{values[i]}) & FieldMask(bits);
    const int64_t bit = static_cast<int64_t>(i) * bits;
    const uint32_t shifted = field << (bit % 8);
    out[bit / 8] |= static_cast<uint8_t>(shifted & 0xffu);
    if (shifted > 0xffu) out[bit / 8 + 1] |= static_cast<uint8_t>(shifted >> 8);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> UnpackBitstream(std::span<const uint8_t> bytes, int64_t count,
                                                     int bits, Signedness signedness) {
  if (auto status = CheckBits(bits); !status.ok()) return status;
  if (count < 0 || static_cast<int64_t>(bytes.size()) * 8 < count * bits) {
    return absl::InvalidArgumentError(absl::StrCat("a bitstream of ", bytes.size(),
                                                   " bytes cannot hold ", count, " values of ",
                                                   bits, " bits"));
  }
  std::vector<int32_t> values(count);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t bit = i * bits;
    uint32_t window = bytes[bit / 8];
    if (bit / 8 + 1 < static_cast<int64_t>(bytes.size()))
      window |= uint32_t{bytes[bit / 8 + 1]} << 8;
    values[i] = FieldToValue((window >> (bit % 8)) & FieldMask(bits), bits, signedness);
  }
  return values;
}

absl::StatusOr<std::vector<uint32_t>> PackWords(std::span<const int32_t> values, int bits,
                                                Signedness signedness) {
  if (auto status = CheckBits(bits); !status.ok()) return status;
  if (auto status = CheckValues(values, bits, signedness); !status.ok()) return status;
  const int per_word = ElementsPerWord(bits);
  std::vector<uint32_t> words((values.size() + per_word - 1) / per_word, 0);
  for (size_t i = 0; i < values.size(); ++i) {
    const uint32_t field = static_cast<uint32_t>(values[i]) & FieldMask(bits);
    words[i / per_word] |= field << ((i % per_word) * bits);
  }
  return words;
}

absl::StatusOr<std::vector<int32_t>> UnpackWords(std::span<const uint32_t> words, int64_t count,
                                                 int bits, Signedness signedness) {
  if (auto status = CheckBits(bits); !status.ok()) return status;
  const int per_word = ElementsPerWord(bits);
  if (count < 0 || static_cast<int64_t>(words.size()) * per_word < count) {
    return absl::InvalidArgumentError(
        absl::StrCat(words.size(), " words cannot hold ", count, " values of ", bits, " bits"));
  }
  std::vector<int32_t> values(count);
  for (int64_t i = 0; i < count; ++i) {
    const uint32_t field = (words[i / per_word] >> ((i % per_word) * bits)) & FieldMask(bits);
    values[i] = FieldToValue(field, bits, signedness);
  }
  return values;
}

}  // namespace flatfleet::quant
