// Shared helpers of the W4A8 GEMM tests (w4a8_decode_gemm_test.cc, w4a8_midm_gemm_test.cc,
// w4a8_prefill_gemm_test.cc): random INT4 weights drawn as codes, the bit-exact comparison of a
// fused-epilogue GEMM with the CPU reference and with today's two-kernel path (CheckW4A8Case),
// and the fakes of the host-side argument tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/quant/packed_int4_matrix.h"
#include "kernels/cpu/quant/quantized_gemm.h"
#include "kernels/cpu/quant/quantized_matrix.h"
#include "kernels/cuda/bias_add.h"
#include "kernels/cuda/gemm_element_type.h"
#include "kernels/cuda/int8_gemm.h"
#include "kernels/cuda/w4a8_fragment_layout.h"
#include "tests/gpu/decode_gemm_test_util.h"
#include "tests/gpu/gpu_test_random.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/int8_quant_test_util.h"

namespace flatfleet::cuda::testing {

// INT4 weights: symmetric codes in [-7, 7], or asymmetric codes and zero points in [-8, 7].
inline quant::QuantizedMatrix RandomInt4Weights(int64_t n, int64_t k, int64_t group_size,
                                                bool zero_points, std::mt19937_64& rng) {
  quant::QuantizedMatrix w;
  w.rows = n;
  w.cols = k;
  w.format = {.bits = 4, .symmetric = !zero_points, .group_size = group_size == k ? 0 : group_size};
  w.codes.resize(n * k);
  for (int64_t i = 0; i < n * k; i += 16) {
    uint64_t r = rng();
    for (int64_t j = i; j < i + 16 && j < n * k; ++j, r >>= 4) {
      const int nibble = static_cast<int>(r & 0xf);
      w.codes[j] = static_cast<int8_t>(zero_points ? nibble - 8 : nibble % 15 - 7);
    }
  }
  const int64_t groups = k / group_size;
  for (int64_t i = 0; i < n * groups; ++i) w.scales.push_back(RandomScaleBits(rng));
  if (zero_points) {
    for (int64_t i = 0; i < n * groups; ++i) {
      w.zero_points.push_back(static_cast<int8_t>(static_cast<int>(rng() & 0xf) - 8));
    }
  }
  return w;
}

// One problem of a batched (prefill-style) W4A8 GEMM test.
struct W4A8Case {
  int64_t m, n, k, group_size;  // group_size == k: per channel
  bool zero_points;
  bool every_row_on_cpu;  // else a sample of rows (the real shapes)
};

inline std::string W4A8CaseName(const W4A8Case& c) {
  return absl::StrCat("m", c.m, "_n", c.n, "_k", c.k, "_g", c.group_size,
                      c.zero_points ? "_zp" : "_sym");
}

// The rows the CPU reference computes: all, or the 64- and 128-row tile edges, the last rows and
// a few random ones.
inline std::vector<int64_t> ReferenceRows(const W4A8Case& c, std::mt19937_64& rng) {
  std::vector<int64_t> rows;
  if (c.every_row_on_cpu) {
    for (int64_t r = 0; r < c.m; ++r) rows.push_back(r);
    return rows;
  }
  for (int64_t r : {int64_t{0}, int64_t{1}, int64_t{63}, int64_t{64}, int64_t{127}, int64_t{128},
                    c.m / 2, c.m - 2, c.m - 1}) {
    if (r >= 0 && r < c.m) rows.push_back(r);
  }
  for (int i = 0; i < 4; ++i) rows.push_back(static_cast<int64_t>(rng() % c.m));
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  return rows;
}

// The given rows of x, as a matrix of their own.
inline quant::QuantizedMatrix SelectRows(const quant::QuantizedMatrix& x,
                                         const std::vector<int64_t>& rows) {
  quant::QuantizedMatrix sub;
  sub.rows = static_cast<int64_t>(rows.size());
  sub.cols = x.cols;
  sub.format = x.format;
  for (int64_t r : rows) {
    sub.codes.insert(sub.codes.end(), x.codes.begin() + r * x.cols,
                     x.codes.begin() + (r + 1) * x.cols);
    sub.scales.push_back(x.scales[r]);
  }
  return sub;
}

// Rows `rows` of an output of row stride y_stride (elements of `size` bytes), packed n apart.
inline std::vector<uint8_t> GatherRows(const std::vector<uint8_t>& y,
                                       const std::vector<int64_t>& rows, int64_t n,
                                       int64_t y_stride, int64_t size) {
  std::vector<uint8_t> out;
  out.reserve(rows.size() * n * size);
  for (int64_t r : rows) {
    const auto begin = y.begin() + r * y_stride * size;
    out.insert(out.end(), begin, begin + n * size);
  }
  return out;
}

// A problem's operands in device memory.
struct W4A8DeviceOperands {
  DeviceBuffer<int8_t> x;
  DeviceBuffer<uint16_t> x_scales, w_scales;
  DeviceBuffer<uint32_t> w;
  DeviceBuffer<int8_t> zeros;
  DeviceBuffer<float> add;
  bool unsigned_nibbles;
};

// x, w (its PackInt4Matrix words `packed`) and the epilogue addition in device memory.
inline W4A8DeviceOperands UploadW4A8Operands(const quant::QuantizedMatrix& x,
                                             const quant::QuantizedMatrix& w,
                                             const quant::PackedInt4Matrix& packed,
                                             const std::vector<float>& add) {
  return W4A8DeviceOperands{
      .x = DeviceBuffer<int8_t>(x.codes),
      .x_scales = DeviceBuffer<uint16_t>(x.scales),
      .w_scales = DeviceBuffer<uint16_t>(w.scales),
      .w = DeviceBuffer<uint32_t>(packed.words),
      .zeros = DeviceBuffer<int8_t>(w.zero_points.empty() ? std::vector<int8_t>{0} : w.zero_points),
      .add = DeviceBuffer<float>(add),
      .unsigned_nibbles = packed.signedness == quant::Signedness::kUnsigned};
}

// One output configuration of a launch.
struct W4A8Output {
  void* y;
  int64_t y_stride;
  GemmElementType y_type;
  bool with_add;
};

// The operand fields of any W4A8 GEMM's argument struct (they all name them alike).
template <typename Args>
Args W4A8GemmOperands(const W4A8Case& c, const W4A8DeviceOperands& d) {
  Args args;
  args.m = c.m;
  args.n = c.n;
  args.k = c.k;
  args.group_size = c.group_size;
  args.x_codes = d.x.get();
  args.x_scales = d.x_scales.get();
  args.w_words = d.w.get();
  args.w_unsigned_nibbles = d.unsigned_nibbles;
  args.w_scales = d.w_scales.get();
  args.w_zero_points = c.zero_points ? d.zeros.get() : nullptr;
  return args;
}

// The same with a fused-epilogue GEMM's output fields.
template <typename Args>
Args W4A8GemmArgs(const W4A8Case& c, const W4A8DeviceOperands& d, const W4A8Output& out) {
  Args args = W4A8GemmOperands<Args>(c, d);
  args.epilogue_add = out.with_add ? d.add.get() : nullptr;
  args.y = out.y;
  args.y_stride = out.y_stride;
  args.y_type = out.y_type;
  return args;
}

// A kernel under test: `launch` enqueues it on the null stream; `check_after` (optional) runs
// once its output has been compared, with the CPU reference's result over every row.
struct W4A8Run {
  std::string name;
  std::function<absl::Status(const W4A8DeviceOperands&, const W4A8Output&)> launch;
  std::function<void(const quant::QuantizedGemmResult&)> check_after;
};

// Runs each of `runs` on one random problem in several output configurations (float32 and bf16,
// with and without the epilogue addition, packed and strided rows, outputs poisoned with 0xFF
// first) and checks each output bit for bit against the CPU reference (every row, or the sampled
// ReferenceRows) and against GemmW4A8 + AddBias on the GPU (every row); stride gaps must stay
// poisoned.
inline void CheckW4A8Case(const W4A8Case& c, const std::vector<W4A8Run>& runs) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const auto x = RandomInt8PerRow(c.m, c.k, rng);
  const auto w = RandomInt4Weights(c.n, c.k, c.group_size, c.zero_points, rng);
  std::vector<float> add(c.n);
  for (float& v : add) {
    v = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
    if (v == 0.0f) v = 0.5f;
  }
  const std::vector<int64_t> rows = ReferenceRows(c, rng);
  const auto expected = quant::GemmW4A8(c.every_row_on_cpu ? x : SelectRows(x, rows), w);
  ASSERT_TRUE(expected.ok()) << expected.status();
  const auto packed = quant::PackInt4Matrix(w);
  ASSERT_TRUE(packed.ok()) << packed.status();

  const W4A8DeviceOperands d = UploadW4A8Operands(x, w, *packed, add);
  ASSERT_NE(d.w.get(), nullptr) << "out of device memory";

  // Today's path, once: the float32 GEMM result, then AddBias per output configuration.
  DeviceBuffer<float> d_gemm(c.m * c.n);
  ASSERT_NE(d_gemm.get(), nullptr) << "out of device memory";
  FF_CUDA_ASSERT(cudaMemset(d_gemm.get(), 0xff, c.m * c.n * 4));
  DeviceW4A8Gemm two_kernel_args = W4A8GemmOperands<DeviceW4A8Gemm>(c, d);
  two_kernel_args.y = d_gemm.get();
  ASSERT_TRUE(GemmW4A8(two_kernel_args, nullptr).ok());

  struct OutputConfig {
    GemmElementType y_type;
    int64_t pad;
    bool with_add;
  };
  std::vector<OutputConfig> configs;
  if (c.every_row_on_cpu) {
    for (GemmElementType y_type : {GemmElementType::kFloat32, GemmElementType::kBf16})
      for (int64_t pad : {0, 3})
        for (bool with_add : {false, true}) configs.push_back({y_type, pad, with_add});
  } else {  // the engine's configuration, and the plain float32 result
    configs = {{GemmElementType::kBf16, 0, true}, {GemmElementType::kFloat32, 0, false}};
  }
  for (const OutputConfig& config : configs) {
    const int64_t size = config.y_type == GemmElementType::kBf16 ? 2 : 4;
    const int64_t y_stride = c.n + config.pad;
    const int64_t y_bytes = ((c.m - 1) * y_stride + c.n) * size;
    const std::vector<uint8_t> want_rows =
        ExpectedBytes(expected->output, config.with_add ? add.data() : nullptr,
                      static_cast<int64_t>(rows.size()), c.n, c.n, config.y_type);
    // Every row of today's two-kernel path (or, without the addition in float32, its GEMM alone).
    std::vector<uint8_t> two_kernel;
    if (config.with_add) {
      DeviceBuffer<uint8_t> d_two(y_bytes);
      FF_CUDA_ASSERT(cudaMemset(d_two.get(), 0xff, y_bytes));
      ASSERT_TRUE(AddBias({.rows = c.m,
                           .cols = c.n,
                           .x = d_gemm.get(),
                           .bias = d.add.get(),
                           .bias_type = GemmElementType::kFloat32,
                           .y = d_two.get(),
                           .y_stride = y_stride,
                           .y_type = config.y_type},
                          nullptr)
                      .ok());
      FF_CUDA_ASSERT(cudaDeviceSynchronize());
      two_kernel = d_two.ToHost();
    } else if (config.y_type == GemmElementType::kFloat32 && config.pad == 0) {
      FF_CUDA_ASSERT(cudaDeviceSynchronize());
      const std::vector<float> gemm = d_gemm.ToHost();
      two_kernel.resize(gemm.size() * 4);
      std::memcpy(two_kernel.data(), gemm.data(), two_kernel.size());
    }
    if (!two_kernel.empty()) {  // today's path agrees with the reference on the reference's rows
      EXPECT_TRUE(SameBytes(want_rows, GatherRows(two_kernel, rows, c.n, y_stride, size), size))
          << "GemmW4A8 + AddBias";
    }
    for (const W4A8Run& run : runs) {
      SCOPED_TRACE(absl::StrCat(run.name,
                                config.y_type == GemmElementType::kBf16 ? " bf16" : " float32",
                                " y_stride ", y_stride, config.with_add ? " with add" : ""));
      DeviceBuffer<uint8_t> d_y(y_bytes);
      ASSERT_NE(d_y.get(), nullptr) << "out of device memory";
      FF_CUDA_ASSERT(cudaMemset(d_y.get(), 0xff, y_bytes));
      const absl::Status status = run.launch(d, {.y = d_y.get(),
                                                 .y_stride = y_stride,
                                                 .y_type = config.y_type,
                                                 .with_add = config.with_add});
      ASSERT_TRUE(status.ok()) << status;
      FF_CUDA_ASSERT(cudaDeviceSynchronize());
      const std::vector<uint8_t> got = d_y.ToHost();
      if (c.every_row_on_cpu) {  // all rows, and the stride gaps still poisoned
        EXPECT_TRUE(
            SameBytes(ExpectedBytes(expected->output, config.with_add ? add.data() : nullptr, c.m,
                                    c.n, y_stride, config.y_type),
                      got, size))
            << "against the CPU reference";
      } else {
        EXPECT_TRUE(SameBytes(want_rows, GatherRows(got, rows, c.n, y_stride, size), size))
            << "against the CPU reference on " << rows.size() << " rows";
      }
      if (!two_kernel.empty()) {
        EXPECT_TRUE(SameBytes(two_kernel, got, size)) << "against GemmW4A8 + AddBias";
      }
      if (run.check_after) run.check_after(*expected);
    }
  }
}

// Argument checks run on the host before any launch: no GPU needed. Fake, never dereferenced,
// 16-byte aligned addresses stand in for device buffers.
template <typename T>
T* FakeDevicePointer(uintptr_t offset = 0) {
  return reinterpret_cast<T*>(uintptr_t{1} << 20 | offset);
}

// Valid arguments of m rows (n = 64, k = 512, groups of 128) on fake pointers.
template <typename Args>
Args FakeW4A8Args(int64_t m) {
  Args args;
  args.m = m;
  args.n = 64;
  args.k = 512;
  args.group_size = 128;
  args.x_codes = FakeDevicePointer<int8_t>();
  args.x_scales = FakeDevicePointer<uint16_t>();
  args.w_words = FakeDevicePointer<uint32_t>();
  args.w_scales = FakeDevicePointer<uint16_t>();
  args.y = FakeDevicePointer<float>();
  return args;
}

// Valid but for y (null): the shape checks come first, and should one wrongly pass, the call
// still stops at the pointers instead of launching on fake addresses.
template <typename Args>
Args FakeW4A8ShapeArgs(int64_t m) {
  Args args = FakeW4A8Args<Args>(m);
  args.y = nullptr;
  return args;
}

// `status` has `code` and a message containing `text`.
inline ::testing::AssertionResult StatusMentions(const absl::Status& status, absl::StatusCode code,
                                                 const std::string& text) {
  if (status.code() == code && std::string(status.message()).find(text) != std::string::npos) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "got " << status;
}

// The checks every W4A8 GEMM shares (CheckW4A8Shape, CheckW4A8Pointers in
// kernels/cuda/w4a8_gemm_checks.h), through `gemm(args)` (the wrapper on the null stream) on fake
// arguments of `valid_m` rows: each of `bad_ms` is refused with `m_message`, then n, k,
// group_size, the int32 bound, y_stride, y_type and an unknown kernel.
template <typename Args, typename Gemm>
void ExpectSharedW4A8ShapeChecks(Gemm gemm, int64_t valid_m, std::initializer_list<int64_t> bad_ms,
                                 const std::string& m_message) {
  constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
  auto fails = [&](const Args& args, absl::StatusCode code, const std::string& text) {
    return StatusMentions(gemm(args), code, text);
  };
  for (int64_t m : bad_ms) {
    auto args = FakeW4A8ShapeArgs<Args>(valid_m);
    args.m = m;
    EXPECT_TRUE(fails(args, kInvalid, m_message)) << m;
  }
  auto args = FakeW4A8ShapeArgs<Args>(valid_m);
  args.n = 0;
  EXPECT_TRUE(fails(args, kInvalid, "n must be"));
  for (int64_t k : {0, 48, 496}) {
    args = FakeW4A8ShapeArgs<Args>(valid_m);
    args.k = k;
    args.group_size = 32;
    EXPECT_TRUE(fails(args, kInvalid, "k must be a positive multiple of 32")) << k;
  }
  for (int64_t group_size : {0, 48, 96, 1024}) {  // 96 and 1024 do not divide 512
    args = FakeW4A8ShapeArgs<Args>(valid_m);
    args.group_size = group_size;
    EXPECT_TRUE(fails(args, kInvalid, "group_size")) << group_size;
  }
  args = FakeW4A8ShapeArgs<Args>(valid_m);
  args.k = 2415648;  // 2415648 * 127 * 7 > 2^31 - 1 (2415616 would fit)
  args.group_size = 32;
  EXPECT_TRUE(fails(args, absl::StatusCode::kOutOfRange, "overflow"));
  args.k = 1127360;  // fine symmetric, but 1127360 * 127 * 15 > 2^31 - 1 with zero points
  EXPECT_TRUE(fails(args, kInvalid, "y is null"));
  args.w_zero_points = FakeDevicePointer<int8_t>();
  EXPECT_TRUE(fails(args, absl::StatusCode::kOutOfRange, "overflow"));
  args = FakeW4A8ShapeArgs<Args>(valid_m);
  args.y_stride = 63;
  EXPECT_TRUE(fails(args, kInvalid, "y_stride"));
  args = FakeW4A8ShapeArgs<Args>(valid_m);
  args.y_type = static_cast<GemmElementType>(7);
  EXPECT_TRUE(fails(args, kInvalid, "y_type"));
  args = FakeW4A8Args<Args>(valid_m);
  args.kernel = static_cast<decltype(args.kernel)>(9);
  EXPECT_TRUE(fails(args, kInvalid, "kernel"));
}

// Null operands and misaligned x_codes, w_words, y are refused (fake arguments of `valid_m` rows).
template <typename Args, typename Gemm>
void ExpectSharedW4A8PointerChecks(Gemm gemm, int64_t valid_m) {
  constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
  auto fails = [&](const Args& args, const std::string& text) {
    return StatusMentions(gemm(args), kInvalid, text);
  };
  auto args = FakeW4A8Args<Args>(valid_m);
  args.x_codes = nullptr;
  EXPECT_TRUE(fails(args, "x_codes is null"));
  args = FakeW4A8Args<Args>(valid_m);
  args.x_scales = nullptr;
  EXPECT_TRUE(fails(args, "x_scales is null"));
  args = FakeW4A8Args<Args>(valid_m);
  args.w_words = nullptr;
  EXPECT_TRUE(fails(args, "w_words is null"));
  args = FakeW4A8Args<Args>(valid_m);
  args.w_scales = nullptr;
  EXPECT_TRUE(fails(args, "w_scales is null"));
  args = FakeW4A8Args<Args>(valid_m);
  args.y = nullptr;
  EXPECT_TRUE(fails(args, "y is null"));
  args = FakeW4A8Args<Args>(valid_m);
  args.x_codes = FakeDevicePointer<int8_t>(8);
  EXPECT_TRUE(fails(args, "x_codes must be 16-byte aligned"));
  args = FakeW4A8Args<Args>(valid_m);
  args.w_words = FakeDevicePointer<uint32_t>(4);
  EXPECT_TRUE(fails(args, "w_words must be 16-byte aligned"));
  args = FakeW4A8Args<Args>(valid_m);
  args.y = FakeDevicePointer<uint8_t>(2);  // 2-byte aligned: fine for bf16, not for float32
  EXPECT_TRUE(fails(args, "y is not aligned"));
}

// The fragment layout (w4a8_fragment_layout.h) of a case's weights, built on the device from the
// operands the other W4A8 GEMMs read (RepackW4A8Fragments).
struct DeviceFragments {
  DeviceBuffer<uint32_t> words, scales;
  DeviceFragments(int64_t n, int64_t k, int64_t group_size)
      : words(W4A8FragmentWordCount(n, k)), scales(W4A8FragmentScaleWordCount(n, k, group_size)) {}
};

inline absl::Status RepackW4A8Fragments(const W4A8Case& c, const W4A8DeviceOperands& d,
                                        DeviceFragments& f) {
  if (f.words.get() == nullptr || f.scales.get() == nullptr) {
    return absl::ResourceExhaustedError("out of device memory");
  }
  return PackW4A8Fragments({.n = c.n,
                            .k = c.k,
                            .group_size = c.group_size,
                            .words = d.w.get(),
                            .scales = d.w_scales.get(),
                            .zero_points = c.zero_points ? d.zeros.get() : nullptr},
                           f.words.get(), f.scales.get(), nullptr);
}

// One run of a GEMM with K split over CTAs: its float32 outputs (no addition), its float32
// outputs with the addition, and its bf16 outputs with the addition, [m, n] each.
struct W4A8SplitOutputs {
  std::vector<float> plain, with_add;
  std::vector<uint16_t> bf16;
};

// A split run against the CPU reference `expected` (quant::GemmW4A8 of x and w, with its group
// sums): every output within the split GEMMs' bound |y - y_ref| <= (groups + split) 2^-23 |s_x|
// sum_g |S_g s_w|, and the epilogue exactly as specified on the kernel's own float32 result (one
// float32 addition, then one round-to-nearest-even to bf16). Prints how many outputs the
// regrouping changed.
inline void ExpectW4A8SplitWithinBound(const quant::QuantizedMatrix& x,
                                       const quant::QuantizedMatrix& w,
                                       const quant::QuantizedGemmResult& expected,
                                       const std::vector<float>& add, int split,
                                       const W4A8SplitOutputs& run) {
  const int64_t m = x.rows, n = w.rows, groups = static_cast<int64_t>(w.scales.size()) / n;
  const double unit = std::ldexp(1.0, -23);
  int64_t over_bound = 0, regrouped = 0;
  for (int64_t r = 0; r < m; ++r) {
    const double x_scale = std::fabs(static_cast<double>(HalfToFloat(x.scales[r])));
    for (int64_t j = 0; j < n; ++j) {
      double terms = 0;
      for (int64_t gi = 0; gi < groups; ++gi) {
        terms +=
            std::fabs(static_cast<double>(expected.group_accumulators[(r * n + j) * groups + gi]) *
                      HalfToFloat(w.scales[j * groups + gi]));
      }
      const int64_t at = r * n + j;
      const float got = run.plain[at];
      const double bound = (groups + split) * unit * x_scale * terms;
      const double error = std::fabs(static_cast<double>(got) - expected.output[at]);
      if (!(error <= bound) && ++over_bound <= 5) {
        ADD_FAILURE() << "row " << r << " channel " << j << ": " << got << " against "
                      << expected.output[at] << ", error " << error << " > bound " << bound;
      }
      if (got != expected.output[at]) ++regrouped;
      const float want_add = got + add[j];
      uint32_t got_bits, want_bits;
      std::memcpy(&got_bits, &run.with_add[at], 4);
      std::memcpy(&want_bits, &want_add, 4);
      ASSERT_EQ(got_bits, want_bits) << "row " << r << " channel " << j << " with the addition";
      ASSERT_EQ(run.bf16[at], FloatToBf16(want_add))
          << "row " << r << " channel " << j << " in bf16";
    }
  }
  EXPECT_EQ(over_bound, 0);
  std::printf("split %d: %lld of %lld outputs differ from the unsplit reference (within bound)\n",
              split, static_cast<long long>(regrouped), static_cast<long long>(m * n));
}

}  // namespace flatfleet::cuda::testing
