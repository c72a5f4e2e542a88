// The fused rotary + KV-cache write kernel against the CPU reference: ApplyRotary
// (kernels/cpu/rotary.h) on the widened bf16 inputs, then bf16 rounding or QuantizeKvRows
// (kernels/cpu/kv_quantization.h).
//
// Why not bit-exact: both sides compute the same explicit fused multiply-adds on cos/sin from
// double-precision functions, but the GPU's double sincos may differ from the host libm's by an
// ulp, which after rounding to float changes cos or sin by a float ulp in rare cases; that moves
// a bf16 rounding (or an INT8 code, or a scale's FP16 rounding) only when the value sits within
// that distance of a rounding tie: outputs are within 1 bf16 ulp (codes within 1, scales within
// 1 FP16 ulp) and equal for all but a tiny fraction. (Before the reference spelled its FMAs out,
// GCC's contraction made the two sides differ by up to 6 bf16 ulps where the products cancel, at
// positions near 2^20.)
// The plain v copy and v's quantization involve no arithmetic and must be identical.
#include "kernels/cuda/rotary_kv_write.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/kv_quantization.h"
#include "kernels/cpu/rotary.h"
#include "tests/gpu/gpu_test_random.h"
#include "tests/gpu/gpu_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::DeviceBuffer;
using testing::UlpDistance16;

struct RotaryCase {
  const char* name;
  int64_t rows, num_heads, num_kv_heads, head_dim;
  int64_t block_size, num_blocks;
  bool int8;
  int32_t max_position;
};

std::string CaseName(const ::testing::TestParamInfo<RotaryCase>& info) { return info.param.name; }

// Counts of a comparison: elements that differ at all, and the largest difference.
struct Mismatch {
  int64_t compared = 0, differing = 0, max_distance = 0;
  void Add(int64_t distance) {
    ++compared;
    if (distance != 0) ++differing;
    max_distance = std::max(max_distance, distance);
  }
};

// At most 1 apart everywhere, and equal for at least 99.9% (a contracted-FMA tie is rare).
void ExpectNearlyEqual(const Mismatch& m, const char* what) {
  EXPECT_LE(m.max_distance, 1) << what;
  EXPECT_LE(m.differing * 1000, m.compared)
      << what << ": " << m.differing << " of " << m.compared << " differ";
}

class RotaryKvWriteGpuTest : public ::testing::TestWithParam<RotaryCase> {};

TEST_P(RotaryKvWriteGpuTest, MatchesCpuReference) {
  FF_SKIP_WITHOUT_GPU();
  const RotaryCase c = GetParam();
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);

  const int64_t rows = c.rows, heads = c.num_heads, kv_heads = c.num_kv_heads, dim = c.head_dim;
  const int64_t width = (heads + 2 * kv_heads) * dim;
  const int64_t slots = c.block_size * c.num_blocks;
  ASSERT_GE(slots, rows);

  // Inputs: Gaussian values whose scale varies by row (INT8 scales cover a range), as bf16.
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> log_scale(-2.0f, 1.0f);
  std::vector<uint16_t> qkv_bits(rows * width);
  std::vector<float> qkv(rows * width);
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = std::pow(10.0f, log_scale(rng));
    for (int64_t i = 0; i < width; ++i) {
      float v;
      do {
        v = scale * normal(rng);
      } while (v == 0.0f);
      qkv_bits[r * width + i] = FloatToBF16(v);
      qkv[r * width + i] = BF16ToFloat(qkv_bits[r * width + i]);
    }
  }
  std::uniform_int_distribution<int32_t> position_dist(0, c.max_position);
  std::vector<int32_t> positions(rows);
  for (auto& p : positions) p = position_dist(rng);
  positions[0] = 0;
  if (rows > 1) positions[rows - 1] = c.max_position;
  std::vector<float> inv_freq(dim / 2);  // Llama-3's theta
  for (int64_t i = 0; i < dim / 2; ++i) {
    inv_freq[i] = 1.0f / std::pow(500000.0f, static_cast<float>(2 * i) / static_cast<float>(dim));
  }
  // Distinct random slots; about one row in five writes nothing (slot -1).
  std::vector<int32_t> all_slots(slots);
  std::iota(all_slots.begin(), all_slots.end(), 0);
  std::shuffle(all_slots.begin(), all_slots.end(), rng);
  std::vector<int32_t> slot_mapping(all_slots.begin(), all_slots.begin() + rows);
  for (int64_t r = 0; r < rows; ++r) {
    if (rng() % 5 == 0) slot_mapping[r] = -1;
  }

  // CPU reference.
  std::vector<float> q_ref(rows * heads * dim), k_ref(rows * kv_heads * dim),
      v_ref(rows * kv_heads * dim);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = qkv.data() + r * width;
    std::copy(row, row + heads * dim, q_ref.begin() + r * heads * dim);
    std::copy(row + heads * dim, row + (heads + kv_heads) * dim,
              k_ref.begin() + r * kv_heads * dim);
    std::copy(row + (heads + kv_heads) * dim, row + width, v_ref.begin() + r * kv_heads * dim);
  }
  const std::vector<int64_t> positions64(positions.begin(), positions.end());
  kernels::cpu::ApplyRotary(q_ref.data(), heads, dim, positions64, inv_freq);
  kernels::cpu::ApplyRotary(k_ref.data(), kv_heads, dim, positions64, inv_freq);

  // Device buffers; the cache and q_out are poisoned with 0xFF bytes first.
  const size_t element_bytes = c.int8 ? 1 : 2;
  const int64_t cache_elements = slots * kv_heads * dim;
  DeviceBuffer<uint16_t> d_qkv(qkv_bits);
  DeviceBuffer<int32_t> d_positions(positions), d_slots(slot_mapping);
  DeviceBuffer<float> d_inv_freq(inv_freq);
  DeviceBuffer<uint16_t> d_q_out(rows * heads * dim);
  DeviceBuffer<uint8_t> d_keys(cache_elements * element_bytes),
      d_values(cache_elements * element_bytes);
  DeviceBuffer<uint16_t> d_key_scales(slots * kv_heads), d_value_scales(slots * kv_heads);
  ASSERT_NE(d_keys.get(), nullptr);
  FF_CUDA_ASSERT(cudaMemset(d_q_out.get(), 0xFF, rows * heads * dim * 2));
  FF_CUDA_ASSERT(cudaMemset(d_keys.get(), 0xFF, cache_elements * element_bytes));
  FF_CUDA_ASSERT(cudaMemset(d_values.get(), 0xFF, cache_elements * element_bytes));
  FF_CUDA_ASSERT(cudaMemset(d_key_scales.get(), 0xFF, slots * kv_heads * 2));
  FF_CUDA_ASSERT(cudaMemset(d_value_scales.get(), 0xFF, slots * kv_heads * 2));

  RotaryKvWriteParams params;
  params.qkv = reinterpret_cast<const __nv_bfloat16*>(d_qkv.get());
  params.positions = d_positions.get();
  params.inv_freq = d_inv_freq.get();
  params.slot_mapping = d_slots.get();
  params.q_out = reinterpret_cast<__nv_bfloat16*>(d_q_out.get());
  params.cache = {.keys = d_keys.get(),
                  .values = d_values.get(),
                  .key_scales = c.int8 ? d_key_scales.get() : nullptr,
                  .value_scales = c.int8 ? d_value_scales.get() : nullptr,
                  .int8 = c.int8,
                  .num_blocks = c.num_blocks,
                  .block_size = c.block_size,
                  .num_kv_heads = kv_heads,
                  .head_dim = dim};
  params.rows = rows;
  params.num_heads = heads;
  params.num_kv_heads = kv_heads;
  params.head_dim = dim;
  const absl::Status status = RotaryKvWrite(params, nullptr);
  ASSERT_TRUE(status.ok()) << status;
  FF_CUDA_ASSERT(cudaDeviceSynchronize());

  // q: within 1 bf16 ulp of the rounded reference.
  const std::vector<uint16_t> q_out = d_q_out.ToHost();
  Mismatch q_mismatch;
  for (int64_t i = 0; i < rows * heads * dim; ++i) {
    q_mismatch.Add(UlpDistance16(q_out[i], FloatToBF16(q_ref[i])));
  }
  ExpectNearlyEqual(q_mismatch, "q_out");

  const std::vector<uint8_t> keys = d_keys.ToHost(), values = d_values.ToHost();
  const std::vector<uint16_t> key_scales = d_key_scales.ToHost(),
                              value_scales = d_value_scales.ToHost();
  const int64_t row_elements = kv_heads * dim;
  std::vector<bool> written(slots, false);
  Mismatch k_mismatch, k_scale_mismatch;
  int64_t v_differing = 0;
  if (!c.int8) {
    for (int64_t r = 0; r < rows; ++r) {
      if (slot_mapping[r] < 0) continue;
      const int64_t slot = slot_mapping[r];
      written[slot] = true;
      for (int64_t i = 0; i < row_elements; ++i) {
        uint16_t k_bits, v_bits;
        std::memcpy(&k_bits, keys.data() + (slot * row_elements + i) * 2, 2);
        std::memcpy(&v_bits, values.data() + (slot * row_elements + i) * 2, 2);
        k_mismatch.Add(UlpDistance16(k_bits, FloatToBF16(k_ref[r * row_elements + i])));
        if (v_bits != qkv_bits[r * width + (heads + kv_heads) * dim + i]) ++v_differing;
      }
    }
    ExpectNearlyEqual(k_mismatch, "bf16 keys");
  } else {
    std::vector<int8_t> k_codes(rows * row_elements), v_codes(rows * row_elements);
    std::vector<uint16_t> k_scales(rows * kv_heads), v_scales(rows * kv_heads);
    kernels::cpu::QuantizeKvRows(k_ref.data(), rows, kv_heads, dim, k_codes.data(),
                                 k_scales.data());
    kernels::cpu::QuantizeKvRows(v_ref.data(), rows, kv_heads, dim, v_codes.data(),
                                 v_scales.data());
    for (int64_t r = 0; r < rows; ++r) {
      if (slot_mapping[r] < 0) continue;
      const int64_t slot = slot_mapping[r];
      written[slot] = true;
      for (int64_t i = 0; i < row_elements; ++i) {
        const int8_t k_code = static_cast<int8_t>(keys[slot * row_elements + i]);
        const int8_t v_code = static_cast<int8_t>(values[slot * row_elements + i]);
        k_mismatch.Add(std::abs(k_code - k_codes[r * row_elements + i]));
        if (v_code != v_codes[r * row_elements + i]) ++v_differing;
      }
      for (int64_t h = 0; h < kv_heads; ++h) {
        k_scale_mismatch.Add(
            UlpDistance16(key_scales[slot * kv_heads + h], k_scales[r * kv_heads + h]));
        if (value_scales[slot * kv_heads + h] != v_scales[r * kv_heads + h]) ++v_differing;
      }
    }
    ExpectNearlyEqual(k_mismatch, "INT8 key codes");
    EXPECT_LE(k_scale_mismatch.max_distance, 1) << "INT8 key scales";
    // Each head's scale comes from its max|x|: a differing scale is as rare as a differing max.
    EXPECT_LE(k_scale_mismatch.differing * 100, std::max<int64_t>(1, k_scale_mismatch.compared))
        << k_scale_mismatch.differing << " of " << k_scale_mismatch.compared
        << " key scales differ";
  }
  EXPECT_EQ(v_differing, 0) << "values (no arithmetic) must be identical";

  // Slots no row wrote (including those of the rows with slot -1) keep their poison.
  int64_t touched = 0;
  for (int64_t slot = 0; slot < slots; ++slot) {
    if (written[slot]) continue;
    for (int64_t b = 0; b < row_elements * static_cast<int64_t>(element_bytes); ++b) {
      touched += keys[slot * row_elements * element_bytes + b] != 0xFF;
      touched += values[slot * row_elements * element_bytes + b] != 0xFF;
    }
    if (c.int8) {
      for (int64_t h = 0; h < kv_heads; ++h) {
        touched += key_scales[slot * kv_heads + h] != 0xFFFF;
        touched += value_scales[slot * kv_heads + h] != 0xFFFF;
      }
    }
  }
  EXPECT_EQ(touched, 0) << "bytes written outside the mapped slots";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, RotaryKvWriteGpuTest,
    ::testing::Values(RotaryCase{"Llama3_8B_Bf16", 37, 32, 8, 128, 16, 4, false, 8191},
                      RotaryCase{"Llama3_8B_Int8", 37, 32, 8, 128, 16, 4, true, 8191},
                      RotaryCase{"Llama3_70B_Bf16", 5, 64, 8, 128, 32, 2, false, 131071},
                      RotaryCase{"Llama3_70B_Int8", 65, 64, 8, 128, 32, 3, true, 131071},
                      RotaryCase{"Mixtral_Int8_LongPositions", 300, 32, 8, 128, 16, 20, true,
                                 32767},
                      RotaryCase{"Tiny8_Bf16", 19, 8, 4, 8, 16, 2, false, 500},
                      RotaryCase{"Tiny8_Int8", 19, 8, 4, 8, 16, 2, true, 500},
                      RotaryCase{"Tiny32_Bf16", 23, 8, 2, 32, 32, 1, false, 2048},
                      RotaryCase{"Tiny32_Int8", 23, 8, 2, 32, 32, 1, true, 2048},
                      // head_dim / 2 odd: the one-element-per-lane kernel.
                      RotaryCase{"OddHalf6_Bf16", 11, 3, 1, 6, 16, 1, false, 1000},
                      RotaryCase{"OddHalf6_Int8", 11, 3, 1, 6, 16, 1, true, 1000},
                      RotaryCase{"HeadDim256_Int8", 9, 4, 1, 256, 16, 1, true, 4096},
                      RotaryCase{"HeadDim256_Bf16", 9, 4, 1, 256, 16, 1, false, 4096},
                      RotaryCase{"Mqa64_Int8", 40, 16, 1, 64, 32, 2, true, 1 << 20}),
    CaseName);

}  // namespace
}  // namespace flatfleet::cuda
