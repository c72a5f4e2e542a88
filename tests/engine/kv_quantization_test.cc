// INT8 KV cache numerics: the quantizer's error bound, and attention over INT8 blocks equal to
// attention over float blocks holding the dequantized values.
#include "kernels/cpu/kv_quantization.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/attention.h"
#include "tests/quant/test_random.h"

namespace flatfleet::kernels::cpu {
namespace {

std::vector<float> Dequantize(const std::vector<int8_t>& codes, const std::vector<uint16_t>& scales,
                              int64_t heads, int64_t head_dim) {
  std::vector<float> out(codes.size());
  for (size_t i = 0; i < codes.size(); ++i) {
    out[i] = HalfToFloat(scales[i / head_dim]) * codes[i];
  }
  (void)heads;
  return out;
}

TEST(KvQuantizationTest, ErrorWithinHalfAStepPerHead) {
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (FLATFLEET_TEST_SEED replays it)");
  std::mt19937_64 rng(seed);
  const int64_t rows = 9, heads = 3, head_dim = 32;
  std::vector<float> x(rows * heads * head_dim);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (size_t i = 0; i < x.size(); ++i) x[i] = normal(rng) * (1 + (i / head_dim) % 5);
  std::fill(x.begin() + head_dim, x.begin() + 2 * head_dim, 0.0f);  // one all-zero head
  std::vector<int8_t> codes(x.size());
  std::vector<uint16_t> scales(rows * heads);
  QuantizeKvRows(x.data(), rows, heads, head_dim, codes.data(), scales.data());
  EXPECT_EQ(scales[1], 0);
  const std::vector<float> back = Dequantize(codes, scales, heads, head_dim);
  for (int64_t r = 0; r < rows * heads; ++r) {
    float absmax = 0.0f;
    for (int64_t d = 0; d < head_dim; ++d)
      absmax = std::max(absmax, std::fabs(x[r * head_dim + d]));
    const float step = HalfToFloat(scales[r]);
    for (int64_t d = 0; d < head_dim; ++d) {
      const int64_t i = r * head_dim + d;
      ASSERT_LE(std::abs(codes[i]), 127);
      // Half a step, plus the clamp at 127 when the FP16 scale rounded down.
      ASSERT_LE(std::fabs(back[i] - x[i]), 0.5f * step + absmax * std::ldexp(1.0f, -11) + 1e-7f)
          << "element " << i;
    }
  }
}

TEST(KvQuantizationTest, AttentionOverInt8BlocksEqualsDequantizedFloatBlocks) {
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (FLATFLEET_TEST_SEED replays it)");
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t heads = 4, kv_heads = 2, head_dim = 16, positions = 21, queries = 3;
  const int64_t row = kv_heads * head_dim;
  std::vector<float> keys(positions * row), values(positions * row), q(queries * heads * head_dim);
  for (float& v : keys) v = normal(rng);
  for (float& v : values) v = normal(rng);
  for (float& v : q) v = normal(rng);
  std::vector<int8_t> key_codes(keys.size()), value_codes(values.size());
  std::vector<uint16_t> key_scales(positions * kv_heads), value_scales(positions * kv_heads);
  QuantizeKvRows(keys.data(), positions, kv_heads, head_dim, key_codes.data(), key_scales.data());
  QuantizeKvRows(values.data(), positions, kv_heads, head_dim, value_codes.data(),
                 value_scales.data());
  const std::vector<float> dq_keys = Dequantize(key_codes, key_scales, kv_heads, head_dim);
  const std::vector<float> dq_values = Dequantize(value_codes, value_scales, kv_heads, head_dim);

  // Two INT8 blocks (split at 8) against one float block of the dequantized values.
  KvBlock first, second;
  first.num_positions = 8;
  first.key_codes = key_codes.data();
  first.value_codes = value_codes.data();
  first.key_scales = key_scales.data();
  first.value_scales = value_scales.data();
  second = first;
  second.num_positions = positions - 8;
  second.key_codes += 8 * row;
  second.value_codes += 8 * row;
  second.key_scales += 8 * kv_heads;
  second.value_scales += 8 * kv_heads;
  const std::vector<KvBlock> int8_blocks = {first, second};
  const std::vector<KvBlock> dq_blocks = {{dq_keys.data(), dq_values.data(), positions}};
  const std::vector<KvBlock> float_blocks = {{keys.data(), values.data(), positions}};
  const AttentionShape shape{heads, kv_heads, head_dim, 1.0f / std::sqrt(float(head_dim))};
  auto attend = [&](const std::vector<KvBlock>& blocks) {
    AttentionSequence sequence{0, queries, positions, blocks};
    std::vector<float> out(q.size());
    CausalAttention(q.data(), std::span<const AttentionSequence>(&sequence, 1), shape, out.data());
    return out;
  };
  const std::vector<float> from_int8 = attend(int8_blocks);
  const std::vector<float> from_dequantized = attend(dq_blocks);
  const std::vector<float> from_float = attend(float_blocks);
  double worst_vs_float = 0.0;
  for (size_t i = 0; i < q.size(); ++i) {
    // Same math up to float32 reassociation of scale * sum(q * code).
    EXPECT_NEAR(from_int8[i], from_dequantized[i], 1e-5f * (1 + std::fabs(from_dequantized[i])));
    worst_vs_float = std::max(worst_vs_float, double(std::fabs(from_int8[i] - from_float[i])));
  }
  // And close to unquantized attention: unit-variance values, ~1/254 relative error per element.
  EXPECT_LT(worst_vs_float, 0.05);
  EXPECT_GT(worst_vs_float, 0.0);  // it did read the INT8 data
}

}  // namespace
}  // namespace flatfleet::kernels::cpu
