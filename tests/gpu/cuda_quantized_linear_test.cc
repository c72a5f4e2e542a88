// Quantized linear layers on the CUDA backend (kernels/cuda/backend/cuda_quantized_linear.h)
// against the CPU integer reference (quant::QuantizedLinear::Forward) on the same bf16 inputs:
// the per-token INT8 codes, the integer GEMM and the float epilogue are each bit-exact with the
// reference, so the float32 output must equal the reference's exactly and the bf16 output must
// be the reference rounded once (RNE). Odd widths exercise the zero padding of K.
#include "kernels/cuda/backend/cuda_quantized_linear.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/quant/quantized_matrix.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "kernels/cuda/add_rmsnorm_quantize.h"
#include "kernels/cuda/backend/cuda_backend.h"
#include "kernels/cuda/fused_add_rmsnorm.h"
#include "kernels/cuda/int8_activation_quantizer.h"
#include "quant/quantized_linear.h"
#include "runtime/cuda/device_allocators.h"
#include "runtime/workspace_arena.h"
#include "tests/gpu/gpu_test_random.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/int8_quant_test_util.h"

namespace flatfleet::kernels::cuda_backend {
namespace {

using runtime::ConstTensorView;
using runtime::MemoryKind;
using runtime::ScalarType;
using runtime::TensorView;

struct LayerCase {
  int64_t m, out, in;
  int bits;
  int64_t group_size;  // 0: per output channel
  bool symmetric;
  bool bias;
  int64_t x_stride_pad;  // extra elements between input rows (a strided view)
};

std::vector<float> Uniform(int64_t count, float scale, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> values(count);
  for (float& v : values) v = u(rng);
  return values;
}

// The stored layer and its CPU reference.
struct Layer {
  quant::QuantizedMatrix weight;
  std::vector<float> bias;
  quant::QuantizedLinear reference;
};

Layer MakeLayer(const LayerCase& c, std::mt19937_64& rng) {
  const std::vector<float> w = Uniform(c.out * c.in, 0.05f, rng);
  auto weight = quant::QuantizeRtn(
      w, c.out, c.in, {.bits = c.bits, .symmetric = c.symmetric, .group_size = c.group_size});
  EXPECT_TRUE(weight.ok()) << weight.status();
  quant::QuantizedLinearParts parts;
  parts.in_features = c.in;
  parts.activation_format = {.bits = 8, .symmetric = true, .group_size = 0};
  parts.weight = *weight;
  if (c.bias) parts.bias = Uniform(c.out, 0.5f, rng);
  auto reference = quant::QuantizedLinear::FromParts(parts);
  EXPECT_TRUE(reference.ok()) << reference.status();
  return {*std::move(weight), parts.bias, *std::move(reference)};
}

class CudaQuantizedLinearTest : public ::testing::TestWithParam<LayerCase> {};

TEST_P(CudaQuantizedLinearTest, MatchesTheIntegerReference) {
  FF_SKIP_WITHOUT_GPU();
  const LayerCase c = GetParam();
  const uint64_t seed = cuda::testing::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  Layer layer = MakeLayer(c, rng);
  ASSERT_FALSE(HasFailure());

  // Activations are bf16 on the GPU: the reference sees the same (bf16-exact) values.
  const int64_t x_stride = c.in + c.x_stride_pad;
  std::vector<uint16_t> x_bits(c.m * x_stride);
  std::vector<float> x(c.m * c.in);
  const std::vector<float> raw = Uniform(c.m * x_stride, 2.0f, rng);
  for (int64_t r = 0; r < c.m; ++r) {
    for (int64_t k = 0; k < x_stride; ++k) {
      x_bits[r * x_stride + k] = FloatToBF16(raw[r * x_stride + k]);
      if (k < c.in) x[r * c.in + k] = BF16ToFloat(x_bits[r * x_stride + k]);
    }
  }
  std::vector<float> expected(c.m * c.out);
  ASSERT_TRUE(layer.reference.Forward(x, c.m, expected).ok());

  auto backend = CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status();
  QuantizedLinearSource source;
  source.name = "test.layer";
  source.weight = &layer.weight;
  source.epilogue_add = layer.bias;
  auto weight = (*backend)->PrepareQuantizedLinear(source);
  ASSERT_TRUE(weight.ok()) << weight.status();
  auto context = (*backend)->CreateContext();
  ASSERT_TRUE(context.ok()) << context.status();
  const int64_t scratch = (*backend)->LinearScratchBytes(**weight, c.m);
  EXPECT_GT(scratch, c.m * c.out * 4);
  ASSERT_TRUE((*context)->ReserveWorkspace(scratch).ok());

  cuda::testing::DeviceBuffer<uint16_t> d_x(x_bits);
  // Outputs poisoned first (NaN bytes), written with a row stride wider than the layer.
  const int64_t y_stride = c.out + 3;
  cuda::testing::DeviceBuffer<float> d_y32(c.m * y_stride);
  cuda::testing::DeviceBuffer<uint16_t> d_y16(c.m * y_stride);
  FF_CUDA_ASSERT(cudaMemset(d_y32.get(), 0xFF, c.m * y_stride * 4));
  FF_CUDA_ASSERT(cudaMemset(d_y16.get(), 0xFF, c.m * y_stride * 2));
  // The poison must land before the layer runs: the context's stream is non-blocking, so it does
  // not wait for the legacy stream's memset (under load the memset ran after the GEMM).
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  ConstTensorView xv(d_x.get(), ScalarType::kBFloat16, MemoryKind::kDevice, c.m, c.in);
  xv.row_stride = x_stride;
  TensorView y32(d_y32.get(), ScalarType::kFloat32, MemoryKind::kDevice, c.m, c.out);
  y32.row_stride = y_stride;
  TensorView y16(d_y16.get(), ScalarType::kBFloat16, MemoryKind::kDevice, c.m, c.out);
  y16.row_stride = y_stride;
  ASSERT_TRUE((*backend)->Linear(**context, **weight, xv, y32).ok());
  ASSERT_TRUE((*backend)->Linear(**context, **weight, xv, y16).ok());
  ASSERT_TRUE((*context)->Synchronize().ok());
  const std::vector<float> got32 = d_y32.ToHost();
  const std::vector<uint16_t> got16 = d_y16.ToHost();
  // W4A8 decode rows through the fragment GEMM with K split over CTAs: the float sums are
  // regrouped, so within w4a8_fragment_gemm.h's bound (groups + split) 2^-23 |s_x| sum_g |S_g s_w|
  // (+ the bias addition's rounding), which is at most (groups + split) 2^-23 * 1.01 max_k |x_k| *
  // sum_k |w_deq[j, k]| (per-token codes: |s_x code| <= max |x| up to the FP16 scale's rounding);
  // and the bf16 output the float32 one rounded once. Every other path: bit for bit.
  const auto* device_weight = dynamic_cast<const CudaQuantizedLinearWeight*>(weight->get());
  ASSERT_NE(device_weight, nullptr);
  // The same holds for the fragment wgmma GEMM where its rule splits K (few tiles, long K).
  const int wgmma_split = UsesW4A8FragmentWgmma(*device_weight, c.m)
                              ? cuda::ChooseW4A8FragmentWgmmaSplit(
                                    c.m, c.out, device_weight->padded_in, device_weight->group_size,
                                    device_weight->fragment_sm_count)
                              : 1;
  const int split = wgmma_split > 1 ? wgmma_split : device_weight->fragment_split;
  const bool regrouped = wgmma_split > 1 || (UsesW4A8FragmentGemm(*device_weight, c.m) &&
                                             device_weight->fragment_split > 1);
  std::vector<double> weight_abs_sums(c.out, 0.0);
  const int64_t groups = device_weight->padded_in / device_weight->group_size;
  if (regrouped) {
    const std::vector<float> dequantized = layer.weight.Dequantize();  // exact: scale * (c - z)
    for (int64_t j = 0; j < c.out; ++j) {
      for (int64_t k = 0; k < c.in; ++k) weight_abs_sums[j] += std::fabs(dequantized[j * c.in + k]);
    }
  }
  int64_t mismatches32 = 0, mismatches16 = 0;
  for (int64_t r = 0; r < c.m; ++r) {
    double x_max = 0;
    for (int64_t k = 0; k < c.in; ++k) x_max = std::max(x_max, std::fabs(double{x[r * c.in + k]}));
    for (int64_t j = 0; j < c.out; ++j) {
      const float want = expected[r * c.out + j];
      if (regrouped) {
        const float got = got32[r * y_stride + j];
        const double bound =
            (groups + split) * std::ldexp(1.0, -23) * (1.01 * x_max * weight_abs_sums[j]) +
            std::ldexp(1.0, -23) * std::fabs(double{want});
        mismatches32 += !(std::fabs(double{got} - want) <= bound);
        mismatches16 += got16[r * y_stride + j] != FloatToBF16(got);
        continue;
      }
      mismatches32 += std::memcmp(&got32[r * y_stride + j], &want, 4) != 0;
      mismatches16 += got16[r * y_stride + j] != FloatToBF16(want);
    }
    // The padding between rows is not written.
    for (int64_t j = c.out; j < y_stride; ++j) EXPECT_TRUE(std::isnan(got32[r * y_stride + j]));
  }
  EXPECT_EQ(mismatches32, 0) << "of " << c.m * c.out << " float32 outputs";
  EXPECT_EQ(mismatches16, 0) << "of " << c.m * c.out << " bf16 outputs";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaQuantizedLinearTest,
    ::testing::Values(
        // W8A8, per channel: aligned, odd widths (K padded 172 -> 192, 688 -> 704), strided x.
        LayerCase{1, 96, 256, 8, 0, true, false, 0}, LayerCase{7, 130, 172, 8, 0, true, true, 5},
        LayerCase{33, 256, 688, 8, 0, true, true, 0},
        // W4A8: groups of 128 and 32, per channel with padding, asymmetric with zero points.
        LayerCase{1, 64, 256, 4, 128, true, false, 0},
        LayerCase{5, 200, 512, 4, 32, false, true, 8}, LayerCase{3, 77, 172, 4, 0, true, true, 0},
        LayerCase{17, 96, 688, 4, 0, false, false, 0},
        // W8A8 prefill (more than kCublasInt8MinRows rows): cuBLASLt's IMMA sums + epilogue,
        // padded K, odd n, strided x.
        LayerCase{300, 256, 688, 8, 0, true, true, 0},
        LayerCase{257, 130, 172, 8, 0, true, true, 4},
        LayerCase{300, 1024, 4096, 8, 0, true, false, 0},
        // Real shapes (Llama-3-8B q|k|v and down_proj at decode batch sizes).
        LayerCase{16, 6144, 4096, 4, 128, true, false, 0},
        LayerCase{4, 4096, 14336, 8, 0, true, false, 0},
        LayerCase{2, 4096, 14336, 4, 128, true, false, 0},
        // W4A8 decode through kAuto's split-K kernel (narrow layers): zero points with a bias, and
        // per channel with K padded 1000 -> 1024 (one group of 8 windows) and strided x.
        LayerCase{1, 4096, 4096, 4, 128, false, true, 0},
        LayerCase{9, 520, 1000, 4, 0, true, true, 3},
        // W4A8 through the fragment GEMM with K split over CTAs (UsesW4A8FragmentGemm): one row
        // of a 14336 x 4096 layer (split 4) with zero points and a bias, 12 rows of the 8B
        // gate|up (split 2), 24 rows of a narrow layer (above 16 rows it always runs; split 16).
        LayerCase{1, 14336, 4096, 4, 128, false, true, 0},
        LayerCase{12, 28672, 4096, 4, 128, true, false, 0},
        LayerCase{24, 512, 4096, 4, 128, true, true, 2}),
    [](const ::testing::TestParamInfo<LayerCase>& info) {
      const LayerCase& c = info.param;
      return absl::StrCat("W", c.bits, "A8_m", c.m, "_", c.out, "x", c.in, "_g", c.group_size,
                          c.symmetric ? "_sym" : "_zp", c.bias ? "_bias" : "",
                          c.x_stride_pad ? "_strided" : "");
    });

// RunQuantizedLinearOnCodes: (1) on the codes QuantizeActivationsInt8 writes, the integer
// reference's float32 output exactly; (2) on the codes of the fused add + RMSNorm + quantize
// kernel, exactly what FusedAddRmsNorm to bf16 then RunQuantizedLinear give (the bf16 y the two
// quantize is the same: add_rmsnorm_quantize_test.cc). Tolerance 0 both ways.
class CudaQuantizedLinearOnCodesTest : public ::testing::TestWithParam<LayerCase> {};

TEST_P(CudaQuantizedLinearOnCodesTest, MatchesTheReferenceAndTheUnfusedNorm) {
  FF_SKIP_WITHOUT_GPU();
  const LayerCase c = GetParam();
  ASSERT_EQ(c.in % 4, 0) << "the fused norm kernel needs hidden % 4 == 0";
  const uint64_t seed = cuda::testing::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  Layer layer = MakeLayer(c, rng);
  ASSERT_FALSE(HasFailure());
  auto backend = CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status();
  QuantizedLinearSource source;
  source.name = "test.layer";
  source.weight = &layer.weight;
  source.epilogue_add = layer.bias;
  auto prepared = (*backend)->PrepareQuantizedLinear(source);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  const auto& weight = static_cast<const CudaQuantizedLinearWeight&>(**prepared);
  runtime::WorkspaceArena arena(runtime::cuda::DeviceAllocator(0));
  ASSERT_TRUE(arena.Reserve(QuantizedLinearScratchBytes(weight, c.m)).ok());
  const int64_t k = weight.padded_in;
  cuda::testing::DeviceBuffer<int8_t> d_codes(c.m * k);
  cuda::testing::DeviceBuffer<uint16_t> d_scales(c.m);
  cuda::testing::DeviceBuffer<float> d_y(c.m * c.out), d_y_unfused(c.m * c.out);
  const TensorView y(d_y.get(), ScalarType::kFloat32, MemoryKind::kDevice, c.m, c.out);
  const TensorView y_unfused(d_y_unfused.get(), ScalarType::kFloat32, MemoryKind::kDevice, c.m,
                             c.out);

  // (1) Codes of a bf16 x from the activation quantizer.
  std::vector<uint16_t> x_bits(c.m * c.in);
  std::vector<float> x(c.m * c.in);
  const std::vector<float> raw = Uniform(c.m * c.in, 2.0f, rng);
  for (int64_t i = 0; i < c.m * c.in; ++i) {
    x_bits[i] = FloatToBF16(raw[i]);
    x[i] = BF16ToFloat(x_bits[i]);
  }
  std::vector<float> expected(c.m * c.out);
  ASSERT_TRUE(layer.reference.Forward(x, c.m, expected).ok());
  cuda::testing::DeviceBuffer<uint16_t> d_x(x_bits);
  FF_CUDA_ASSERT(cudaMemset(d_codes.get(), 0xFF, c.m * k));
  FF_CUDA_ASSERT(cudaMemset(d_y.get(), 0xFF, c.m * c.out * 4));
  FF_CUDA_ASSERT(cudaDeviceSynchronize());  // before the non-blocking stream's kernels
  ASSERT_TRUE(cuda::QuantizeActivationsInt8({.x = d_x.get(),
                                             .type = cuda::ActivationType::kBfloat16,
                                             .rows = c.m,
                                             .cols = c.in,
                                             .clip_ratio = weight.activation_clip_ratio,
                                             .codes = d_codes.get(),
                                             .codes_stride = k,
                                             .scales = d_scales.get()},
                                            nullptr)
                  .ok());
  absl::Status status =
      RunQuantizedLinearOnCodes(weight, c.m, d_codes.get(), d_scales.get(), y, arena, nullptr);
  ASSERT_TRUE(status.ok()) << status;
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  EXPECT_TRUE(cuda::testing::BitwiseEqual(expected, d_y.ToHost())) << "on quantizer codes";

  // (2) The fused norm's codes against the unfused norm + RunQuantizedLinear.
  const std::vector<float> residual = Uniform(c.m * c.in, 3.0f, rng);
  std::vector<uint16_t> delta_bits;
  for (float v : Uniform(c.m * c.in, 1.0f, rng)) delta_bits.push_back(FloatToBF16(v));
  std::vector<float> gamma = Uniform(c.in, 0.5f, rng);
  for (float& g : gamma) g += 1.0f;
  cuda::testing::DeviceBuffer<float> d_residual(residual), d_residual_unfused(residual);
  cuda::testing::DeviceBuffer<uint16_t> d_delta(delta_bits), d_normed(c.m * c.in);
  cuda::testing::DeviceBuffer<float> d_gamma(gamma);
  const auto* delta = reinterpret_cast<const __nv_bfloat16*>(d_delta.get());
  FF_CUDA_ASSERT(cudaMemset(d_codes.get(), 0xFF, c.m * k));
  FF_CUDA_ASSERT(cudaMemset(d_y.get(), 0xFF, c.m * c.out * 4));
  FF_CUDA_ASSERT(cudaMemset(d_y_unfused.get(), 0xFF, c.m * c.out * 4));
  FF_CUDA_ASSERT(cudaDeviceSynchronize());  // before the non-blocking stream's kernels
  ASSERT_TRUE(cuda::AddRmsNormQuantizeInt8({.residual = d_residual.get(),
                                            .rows = c.m,
                                            .hidden = c.in,
                                            .delta = delta,
                                            .weight = d_gamma.get(),
                                            .clip_ratio = weight.activation_clip_ratio,
                                            .codes = d_codes.get(),
                                            .codes_stride = k,
                                            .scales = d_scales.get()},
                                           nullptr)
                  .ok());
  status = RunQuantizedLinearOnCodes(weight, c.m, d_codes.get(), d_scales.get(), y, arena, nullptr);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_TRUE(cuda::FusedAddRmsNorm({.residual = d_residual_unfused.get(),
                                     .rows = c.m,
                                     .hidden = c.in,
                                     .delta = delta,
                                     .weight = d_gamma.get(),
                                     .out = reinterpret_cast<__nv_bfloat16*>(d_normed.get())},
                                    nullptr)
                  .ok());
  ConstTensorView normed(d_normed.get(), ScalarType::kBFloat16, MemoryKind::kDevice, c.m, c.in);
  status = RunQuantizedLinear(weight, normed, y_unfused, arena, nullptr);
  ASSERT_TRUE(status.ok()) << status;
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  EXPECT_TRUE(cuda::testing::BitwiseEqual(d_residual_unfused.ToHost(), d_residual.ToHost()));
  EXPECT_TRUE(cuda::testing::BitwiseEqual(d_y_unfused.ToHost(), d_y.ToHost())) << "fused norm";
}

// W4A8 decode (split-K and narrow by kAuto), per channel with K padded 1000 -> 1024 and zero
// points, and W8A8 at decode and prefill row counts.
INSTANTIATE_TEST_SUITE_P(Shapes, CudaQuantizedLinearOnCodesTest,
                         ::testing::Values(LayerCase{1, 4096, 4096, 4, 128, true, true, 0},
                                           LayerCase{16, 6144, 4096, 4, 128, false, false, 0},
                                           LayerCase{5, 520, 1000, 4, 0, false, true, 0},
                                           LayerCase{3, 256, 688, 8, 0, true, true, 0},
                                           LayerCase{300, 256, 688, 8, 0, true, false, 0}),
                         [](const ::testing::TestParamInfo<LayerCase>& info) {
                           const LayerCase& c = info.param;
                           return absl::StrCat("W", c.bits, "A8_m", c.m, "_", c.out, "x", c.in,
                                               "_g", c.group_size, c.symmetric ? "_sym" : "_zp",
                                               c.bias ? "_bias" : "");
                         });

// W4A8 prefill (from cuda::kW4A8PrefillMinRows = 64 rows): the 128 x 128-tile GEMM with the
// epilogue fused; 63 rows still take GemmW4A8 + AddBias. Groups of 128 and 32, per channel with
// padded K, zero points, bias, strided x, odd n.
INSTANTIATE_TEST_SUITE_P(W4A8Prefill, CudaQuantizedLinearTest,
                         ::testing::Values(LayerCase{63, 130, 512, 4, 128, true, true, 0},
                                           LayerCase{64, 130, 512, 4, 128, true, true, 0},
                                           LayerCase{200, 77, 172, 4, 0, true, true, 4},
                                           LayerCase{300, 256, 1024, 4, 32, false, true, 0},
                                           LayerCase{129, 96, 688, 4, 0, false, false, 0},
                                           LayerCase{256, 6144, 4096, 4, 128, true, false, 0}),
                         [](const ::testing::TestParamInfo<LayerCase>& info) {
                           const LayerCase& c = info.param;
                           return absl::StrCat("W", c.bits, "A8_m", c.m, "_", c.out, "x", c.in,
                                               "_g", c.group_size, c.symmetric ? "_sym" : "_zp",
                                               c.bias ? "_bias" : "",
                                               c.x_stride_pad ? "_strided" : "");
                         });

TEST(CudaQuantizedLinearTest, RefusesFormatsWithoutAKernel) {
  FF_SKIP_WITHOUT_GPU();
  auto backend = CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status();
  const uint64_t seed = cuda::testing::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  auto refused = [&](const quant::QuantFormat& format, int64_t in, const char* needle) {
    auto weight = quant::QuantizeRtn(Uniform(8 * in, 0.05f, rng), 8, in, format);
    EXPECT_TRUE(weight.ok()) << weight.status();
    QuantizedLinearSource source;
    source.name = "model.layers.3.mlp.down_proj";
    source.weight = &*weight;
    auto prepared = (*backend)->PrepareQuantizedLinear(source);
    EXPECT_FALSE(prepared.ok());
    EXPECT_NE(prepared.status().message().find("model.layers.3.mlp.down_proj"), std::string::npos)
        << prepared.status();
    EXPECT_NE(prepared.status().message().find(needle), std::string::npos) << prepared.status();
  };
  refused({.bits = 4, .symmetric = true, .group_size = 86}, 172, "groups of 86");
  refused({.bits = 3, .symmetric = true, .group_size = 0}, 64, "3-bit");
  refused({.bits = 8, .symmetric = false, .group_size = 0}, 64, "asymmetric");
  refused({.bits = 2, .symmetric = true, .group_size = 0, .balanced = true}, 64, "balanced");
}

TEST(CudaQuantizedLinearTest, RandomLayersHaveTheFloatSpreadAndRun) {
  FF_SKIP_WITHOUT_GPU();
  auto backend = CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status();
  const uint64_t seed = cuda::testing::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  for (int bits : {8, 4}) {
    SCOPED_TRACE(::testing::Message() << "bits " << bits);
    const int64_t out = 256, in = 1024, m = 3;
    auto weight = (*backend)->PrepareRandomQuantizedLinear(
        "random", out, in, seed, 0.02f, {.weight_bits = bits, .group_size = 128});
    ASSERT_TRUE(weight.ok()) << weight.status();
    const auto& q = dynamic_cast<const CudaQuantizedLinearWeight&>(**weight);
    // Codes within the symmetric range, every level used; scales near 0.02 * sqrt(3) / qmax.
    std::vector<uint8_t> codes(q.codes.bytes());
    FF_CUDA_ASSERT(cudaMemcpy(codes.data(), q.codes.data(), codes.size(), cudaMemcpyDeviceToHost));
    std::vector<int64_t> histogram(256, 0);
    for (uint8_t byte : codes) {
      if (bits == 8) {
        ++histogram[static_cast<int8_t>(byte) + 128];
      } else {
        for (int shift : {0, 4}) {
          const int nibble = (byte >> shift) & 0xF;
          ++histogram[(nibble >= 8 ? nibble - 16 : nibble) + 128];
        }
      }
    }
    const int qmax = bits == 8 ? 127 : 7;
    for (int code = -128; code < 128; ++code) {
      if (code < -qmax || code > qmax) {
        EXPECT_EQ(histogram[code + 128], 0) << "code " << code;
      } else {
        EXPECT_GT(histogram[code + 128], 0) << "code " << code;
      }
    }
    std::vector<uint16_t> scales(q.scales.bytes() / 2);
    FF_CUDA_ASSERT(
        cudaMemcpy(scales.data(), q.scales.data(), q.scales.bytes(), cudaMemcpyDeviceToHost));
    const float center = 0.02f * std::sqrt(3.0f) / qmax;
    for (uint16_t s : scales) {
      EXPECT_GE(HalfToFloat(s), 0.74f * center);
      EXPECT_LE(HalfToFloat(s), 1.26f * center);
    }
    auto context = (*backend)->CreateContext();
    ASSERT_TRUE(context.ok());
    ASSERT_TRUE((*context)->ReserveWorkspace((*backend)->LinearScratchBytes(**weight, m)).ok());
    std::mt19937_64 rng(seed);
    std::vector<uint16_t> x_bits(m * in);
    const std::vector<float> x = Uniform(m * in, 1.0f, rng);
    for (int64_t i = 0; i < m * in; ++i) x_bits[i] = FloatToBF16(x[i]);
    cuda::testing::DeviceBuffer<uint16_t> d_x(x_bits);
    cuda::testing::DeviceBuffer<float> d_y(m * out);
    FF_CUDA_ASSERT(cudaMemset(d_y.get(), 0xFF, m * out * 4));
    FF_CUDA_ASSERT(cudaDeviceSynchronize());  // before the non-blocking stream's kernels
    ASSERT_TRUE(
        (*backend)
            ->Linear(**context, **weight,
                     ConstTensorView(d_x.get(), ScalarType::kBFloat16, MemoryKind::kDevice, m, in),
                     TensorView(d_y.get(), ScalarType::kFloat32, MemoryKind::kDevice, m, out))
            .ok());
    ASSERT_TRUE((*context)->Synchronize().ok());
    // Output spread: sqrt(in) * E|x|^2^(1/2) * weight stddev = sqrt(1024 / 3) * 0.02 ~ 0.37.
    double squares = 0;
    for (float y : d_y.ToHost()) {
      ASSERT_TRUE(std::isfinite(y));
      squares += static_cast<double>(y) * y;
    }
    const double rms = std::sqrt(squares / (m * out));
    EXPECT_GT(rms, 0.25);
    EXPECT_LT(rms, 0.5);
  }
}

}  // namespace
}  // namespace flatfleet::kernels::cuda_backend
