// GPTQ's two heavy steps on a GPU for `flatfleet quantize --device cuda`: the calibration Gram
// matrix H = X^T X (accumulated on the device batch by batch, cuBLAS DSYRK in double) and the
// solver (cuSOLVER Cholesky factors, cuBLAS block updates; kernels/cuda/gptq_solver.h). The
// device is a process-wide choice made once by the command; everything else stays on the CPU.
//
// The device solver covers GPTQ without act_order and without clip search (w4a8-gptq); other
// options return Unimplemented from QuantizeGptqOnDevice and QuantizeGptqOnSelectedDevice runs
// them on the CPU. Codes equal the CPU's up to rounding ties (gptq_solver.h states the rule).
// A build without CUDA (FLATFLEET_CUDA off) has no device: SetGptqDevice(kCuda) says so.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cpu/quant/quantized_matrix.h"
#include "quant/gptq_quantizer.h"

namespace flatfleet::quant {

enum class GptqDevice { kCpu, kCuda };

// Selects where GPTQ's Gram accumulation and solver run. kCuda errors (FailedPrecondition) when
// the binary was built without CUDA or no GPU is usable.
absl::Status SetGptqDevice(GptqDevice device);
// Whether this binary has the GPU path at all (FLATFLEET_CUDA builds).
bool GptqDeviceCompiledIn();
GptqDevice SelectedGptqDevice();

// Peak bytes of device memory the GPTQ backend has held at once (Gram matrices, solver buffers);
// 0 on the CPU.
int64_t GptqDevicePeakBytes();

// QuantizeGptq's contract, on the GPU: the same errors for bad shapes and a Hessian that is not
// positive definite; Unimplemented for act_order or clip_search; FailedPrecondition without CUDA.
// `pre_rounding` (tests) receives [rows, cols] float(w) / scale of every element before rounding.
absl::StatusOr<QuantizedMatrix> QuantizeGptqOnDevice(std::span<const float> weight, int64_t rows,
                                                     int64_t cols, std::span<const double> hessian,
                                                     const QuantFormat& format,
                                                     const GptqOptions& options = {},
                                                     std::vector<float>* pre_rounding = nullptr);

// The pipeline's call: the GPU when selected and it covers the options, else QuantizeGptq.
absl::StatusOr<QuantizedMatrix> QuantizeGptqOnSelectedDevice(std::span<const float> weight,
                                                             int64_t rows, int64_t cols,
                                                             std::span<const double> hessian,
                                                             const QuantFormat& format,
                                                             const GptqOptions& options = {});
// As above, but a CPU solve uses `hessian` as its working buffer (QuantizeGptqInPlace): for a
// caller that no longer needs it. The GPU copies it to the device and leaves it as it is.
absl::StatusOr<QuantizedMatrix> QuantizeGptqInPlaceOnSelectedDevice(
    std::span<const float> weight, int64_t rows, int64_t cols, std::span<double> hessian,
    const QuantFormat& format, const GptqOptions& options = {});

// sum of x^T x over float32 rows, held on the device. A failed step is remembered and returned
// by ToHost (RecordRaw, which feeds it, cannot fail).
class DeviceGram {
 public:
  // FailedPrecondition without CUDA.
  static absl::StatusOr<std::unique_ptr<DeviceGram>> Create(int64_t cols);
  ~DeviceGram();
  DeviceGram(const DeviceGram&) = delete;
  DeviceGram& operator=(const DeviceGram&) = delete;

  int64_t cols() const { return cols_; }
  // rows [num_rows, cols] row-major (host); copied to the device before returning.
  absl::Status Add(std::span<const float> rows, int64_t num_rows);
  // The full symmetric [cols, cols] row-major matrix.
  absl::StatusOr<std::vector<double>> ToHost() const;

 private:
  explicit DeviceGram(int64_t cols);
  int64_t cols_;
  absl::Status sticky_;
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace flatfleet::quant
