// Shared helpers of the decode GEMM tests (w4a8_decode_gemm_test.cc, w8a8_decode_gemm_test.cc):
// random quantized operands drawn as codes directly (no float quantization, so the real 70B
// shapes stay affordable), and the expected output bytes of the fused epilogue.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/quant/quantized_matrix.h"
#include "kernels/cuda/gemm_element_type.h"
#include "tests/gpu/ops_test_util.h"

namespace flatfleet::cuda::testing {

// FP16 bits of a positive power-of-two-ish scale in [2^-10, 2^-5): random exponent and mantissa.
inline uint16_t RandomScaleBits(std::mt19937_64& rng) {
  const uint64_t r = rng();
  const uint16_t exponent = static_cast<uint16_t>(5 + r % 5);  // biased: 2^(5-15) .. 2^(9-15)
  return static_cast<uint16_t>(exponent << 10 | ((r >> 8) & 0x3ff));
}

// Symmetric INT8 per-token activations (or per-channel weights): codes in [-127, 127].
inline quant::QuantizedMatrix RandomInt8PerRow(int64_t m, int64_t k, std::mt19937_64& rng) {
  quant::QuantizedMatrix x;
  x.rows = m;
  x.cols = k;
  x.format = {.bits = 8, .symmetric = true, .group_size = 0};
  x.codes.resize(m * k);
  for (int64_t i = 0; i < m * k; i += 8) {
    uint64_t r = rng();
    for (int64_t j = i; j < i + 8 && j < m * k; ++j, r >>= 8) {
      x.codes[j] = static_cast<int8_t>(static_cast<int>(r & 0xff) % 255 - 127);
    }
  }
  for (int64_t r = 0; r < m; ++r) x.scales.push_back(RandomScaleBits(rng));
  return x;
}

// What y should hold: rows y_stride elements apart, each element the bits of round(out + add)
// (4 bytes float32, 2 bytes bf16), the gaps left at the 0xFF poison.
inline std::vector<uint8_t> ExpectedBytes(const std::vector<float>& out, const float* add,
                                          int64_t m, int64_t n, int64_t y_stride,
                                          GemmElementType y_type) {
  const int64_t size = y_type == GemmElementType::kBf16 ? 2 : 4;
  std::vector<uint8_t> bytes(((m - 1) * y_stride + n) * size, 0xff);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      float v = out[r * n + j];
      if (add != nullptr) v = v + add[j];  // one float32 addition
      uint8_t* at = bytes.data() + (r * y_stride + j) * size;
      if (y_type == GemmElementType::kBf16) {
        const uint16_t bits = FloatToBf16(v);
        std::memcpy(at, &bits, 2);
      } else {
        std::memcpy(at, &v, 4);
      }
    }
  }
  return bytes;
}

// Count and first position of differing elements (element size `size`).
inline ::testing::AssertionResult SameBytes(const std::vector<uint8_t>& expected,
                                            const std::vector<uint8_t>& actual, int64_t size) {
  if (expected.size() != actual.size()) return ::testing::AssertionFailure() << "size differs";
  int64_t mismatches = 0, first = -1;
  for (size_t i = 0; i < expected.size(); i += size) {
    if (std::memcmp(&expected[i], &actual[i], size) != 0) {
      if (first < 0) first = static_cast<int64_t>(i / size);
      ++mismatches;
    }
  }
  if (mismatches == 0) return ::testing::AssertionSuccess();
  uint32_t e = 0, a = 0;
  std::memcpy(&e, &expected[first * size], size);
  std::memcpy(&a, &actual[first * size], size);
  return ::testing::AssertionFailure()
         << mismatches << " of " << expected.size() / size << " elements differ; first at element "
         << first << ": expected bits 0x" << std::hex << e << ", got 0x" << a;
}

}  // namespace flatfleet::cuda::testing
