// The CPU-side contract of quant/gptq_device_backend.h, in every build: without CUDA (or without
// a GPU) `--device cuda` is a clear FailedPrecondition and nothing changes; argument errors and
// the options the device does not cover are reported before any device work; with the CPU
// selected the pipeline's call is QuantizeGptq itself. The GPU results are tested in
// tests/gpu/gptq_solver_test.cc.
#include "quant/gptq_device_backend.h"

#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "quant/activation_calibration.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

class GptqDeviceBackendTest : public test_util::RandomTest {};

TEST_F(GptqDeviceBackendTest, CudaWithoutCudaIsAClearError) {
  if (GptqDeviceCompiledIn()) GTEST_SKIP() << "built with CUDA (tests/gpu covers the device)";
  const absl::Status status = SetGptqDevice(GptqDevice::kCuda);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("built without CUDA"), std::string::npos) << status;
  EXPECT_EQ(SelectedGptqDevice(), GptqDevice::kCpu);
  EXPECT_EQ(DeviceGram::Create(8).status().code(), absl::StatusCode::kFailedPrecondition);
  // Calibration keeps its CPU Gram.
  const std::vector<float> x = Gaussian(3 * 8);
  ActivationCalibration calibration;
  CalibrationOptions options;
  options.record_gram = true;
  calibration.RecordRaw(x, 3, 8, options);
  EXPECT_EQ(calibration.device_gram, nullptr);
  EXPECT_EQ(calibration.raw_gram.size(), 64u);
}

TEST_F(GptqDeviceBackendTest, ArgumentErrorsComeFirst) {
  const int64_t rows = 4, cols = 16;
  const std::vector<float> w = Gaussian(rows * cols);
  std::vector<double> h(cols * cols, 0.0);
  for (int64_t i = 0; i < cols; ++i) h[i * cols + i] = 1.0;
  const QuantFormat format{.bits = 4, .symmetric = true, .group_size = 8};
  EXPECT_EQ(QuantizeGptqOnDevice(w, rows, cols + 1, h, format).status().code(),
            absl::StatusCode::kInvalidArgument);
  const QuantFormat bad_group{.bits = 4, .symmetric = true, .group_size = 5};
  EXPECT_EQ(QuantizeGptqOnDevice(w, rows, cols, h, bad_group).status().code(),
            absl::StatusCode::kInvalidArgument);
  GptqOptions act_order;
  act_order.act_order = true;
  EXPECT_EQ(QuantizeGptqOnDevice(w, rows, cols, h, format, act_order).status().code(),
            absl::StatusCode::kUnimplemented);
  GptqOptions clip;
  clip.clip_search = true;
  EXPECT_EQ(QuantizeGptqOnDevice(w, rows, cols, h, format, clip).status().code(),
            absl::StatusCode::kUnimplemented);
}

// The weight scan names the first non-finite value (NaN, +-inf) by row and column, before any
// device work (so also without CUDA).
TEST_F(GptqDeviceBackendTest, NonFiniteWeightIsNamed) {
  const int64_t rows = 4, cols = 16;
  std::vector<double> h(cols * cols, 0.0);
  for (int64_t i = 0; i < cols; ++i) h[i * cols + i] = 1.0;
  const QuantFormat format{.bits = 4, .symmetric = true, .group_size = 8};
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    std::vector<float> w = Gaussian(rows * cols);
    const int64_t at = UniformInt(0, rows * cols - 2);
    w[at] = bad;
    w[at + 1] = bad;  // a second one is not named
    const absl::Status status = QuantizeGptqOnDevice(w, rows, cols, h, format).status();
    ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_NE(status.message().find(absl::StrFormat("row %d, column %d", at / cols, at % cols)),
              std::string::npos)
        << status;
  }
  // The largest finite values pass the scan (to the missing device, in a build without CUDA).
  if (GptqDeviceCompiledIn()) return;
  std::vector<float> w = Gaussian(rows * cols);
  w[0] = std::numeric_limits<float>::max();
  w[1] = -std::numeric_limits<float>::max();
  EXPECT_EQ(QuantizeGptqOnDevice(w, rows, cols, h, format).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(GptqDeviceBackendTest, CpuSelectedIsTheCpuQuantizer) {
  ASSERT_EQ(SelectedGptqDevice(), GptqDevice::kCpu);
  const int64_t rows = 6, cols = 32, samples = 64;
  const std::vector<float> x = Gaussian(samples * cols);
  ActivationCalibration calibration;
  CalibrationOptions options;
  options.record_gram = true;
  calibration.RecordRaw(x, samples, cols, options);
  const std::vector<float> w = Gaussian(rows * cols);
  const QuantFormat format{.bits = 4, .symmetric = false, .group_size = 16};
  auto routed = QuantizeGptqOnSelectedDevice(w, rows, cols, calibration.raw_gram, format);
  auto direct = QuantizeGptq(w, rows, cols, calibration.raw_gram, format);
  ASSERT_TRUE(routed.ok() && direct.ok());
  EXPECT_EQ(routed->codes, direct->codes);
  EXPECT_EQ(routed->scales, direct->scales);
  EXPECT_EQ(routed->zero_points, direct->zero_points);
}

}  // namespace
}  // namespace flatfleet::quant
