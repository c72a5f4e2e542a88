#include "quant/gptq_device_backend.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

#if defined(FLATFLEET_GPTQ_CUDA)
#include <cuda_runtime.h>

#include "kernels/cuda/gptq_solver.h"
#endif

namespace flatfleet::quant {
namespace {

std::atomic<GptqDevice> selected_device{GptqDevice::kCpu};
std::atomic<int64_t> device_bytes_held{0};
std::atomic<int64_t> device_bytes_peak{0};

absl::Status NoCuda() {
  return absl::FailedPreconditionError(
      "--device cuda: this flatfleet was built without CUDA (configure with -DFLATFLEET_CUDA=ON)");
}

#if defined(FLATFLEET_GPTQ_CUDA)

absl::Status Cuda(const char* what, cudaError_t error) {
  if (error == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat("GPTQ on the GPU: ", what, ": ", cudaGetErrorString(error)));
}

// One stream and one pair of library handles for the process; every use holds `mutex` (the
// calibration of different layers may run on different threads).
struct DeviceContext {
  std::mutex mutex;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cusolverDnHandle_t cusolver = nullptr;
};

absl::StatusOr<DeviceContext*> Context() {
  static std::once_flag once;
  static DeviceContext* context = nullptr;  // never destroyed: used until exit
  static absl::Status* failure = nullptr;
  std::call_once(once, [] {
    auto* c = new DeviceContext;
    absl::Status status =
        Cuda("cudaStreamCreate", cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    if (status.ok() && cublasCreate(&c->cublas) != CUBLAS_STATUS_SUCCESS) {
      status = absl::InternalError("GPTQ on the GPU: cublasCreate failed");
    }
    if (status.ok() && cusolverDnCreate(&c->cusolver) != CUSOLVER_STATUS_SUCCESS) {
      status = absl::InternalError("GPTQ on the GPU: cusolverDnCreate failed");
    }
    if (status.ok()) {
      context = c;
    } else {
      failure = new absl::Status(status);
    }
  });
  if (context == nullptr) return *failure;
  return context;
}

// cudaMalloc'd bytes, counted towards the peak.
class DeviceBytes {
 public:
  DeviceBytes() = default;
  ~DeviceBytes() { Reset(); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;

  absl::Status Allocate(size_t bytes) {
    Reset();
    void* ptr = nullptr;
    FF_RETURN_IF_ERROR(Cuda(absl::StrFormat("cudaMalloc of %d bytes", bytes).c_str(),
                            cudaMalloc(&ptr, std::max<size_t>(bytes, 1))));
    ptr_ = ptr;
    bytes_ = static_cast<int64_t>(bytes);
    const int64_t held = device_bytes_held.fetch_add(bytes_) + bytes_;
    int64_t peak = device_bytes_peak.load();
    while (held > peak && !device_bytes_peak.compare_exchange_weak(peak, held)) {
    }
    return absl::OkStatus();
  }
  void Reset() {
    if (ptr_ == nullptr) return;
    cudaFree(ptr_);
    device_bytes_held.fetch_sub(bytes_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t size() const { return static_cast<size_t>(bytes_); }

 private:
  void* ptr_ = nullptr;
  int64_t bytes_ = 0;
};

// Rows widened to double per DSYRK call: enough to keep the GEMM efficient, bounded in memory.
constexpr int64_t kGramChunkRows = 1024;

#endif  // FLATFLEET_GPTQ_CUDA

}  // namespace

#if defined(FLATFLEET_GPTQ_CUDA)
struct DeviceGram::State {
  DeviceBytes gram;       // [cols, cols], upper triangle (column-major) accumulated
  DeviceBytes rows;       // staging of one Add's float rows
  DeviceBytes workspace;  // rows widened to double
};
#else
struct DeviceGram::State {};
#endif

absl::Status SetGptqDevice(GptqDevice device) {
  if (device == GptqDevice::kCuda) {
#if defined(FLATFLEET_GPTQ_CUDA)
    int count = 0;
    const cudaError_t error = cudaGetDeviceCount(&count);
    if (error != cudaSuccess || count == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("--device cuda: no usable GPU (",
                       error == cudaSuccess ? "no CUDA device" : cudaGetErrorString(error), ")"));
    }
    FF_RETURN_IF_ERROR(Context().status());
#else
    return NoCuda();
#endif
  }
  selected_device.store(device);
  return absl::OkStatus();
}

bool GptqDeviceCompiledIn() {
#if defined(FLATFLEET_GPTQ_CUDA)
  return true;
#else
  return false;
#endif
}

GptqDevice SelectedGptqDevice() { return selected_device.load(); }

int64_t GptqDevicePeakBytes() { return device_bytes_peak.load(); }

absl::StatusOr<QuantizedMatrix> QuantizeGptqOnDevice(std::span<const float> weight, int64_t rows,
                                                     int64_t cols, std::span<const double> hessian,
                                                     const QuantFormat& format,
                                                     const GptqOptions& options,
                                                     std::vector<float>* pre_rounding) {
  // The CPU's argument checks, with its messages.
  if (rows <= 0 || cols <= 0 || static_cast<int64_t>(weight.size()) != rows * cols ||
      static_cast<int64_t>(hessian.size()) != cols * cols) {
    return absl::InvalidArgumentError(
        absl::StrFormat("GPTQ: weight of %d values and Hessian of %d for a %d x %d matrix",
                        weight.size(), hessian.size(), rows, cols));
  }
  if (!(options.damp >= 0.0) || options.block_size <= 0) {
    return absl::InvalidArgumentError("GPTQ: need damp >= 0 and block_size > 0");
  }
  const int64_t group_size = format.group_size == 0 ? cols : format.group_size;
  if (format.group_size < 0 || cols % group_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("GPTQ: group size %d does not divide %d", format.group_size, cols));
  }
  if (options.act_order || options.clip_search) {
    return absl::UnimplementedError(
        "GPTQ on the GPU covers neither act_order nor clip search (they run on the CPU)");
  }
  // Checked here so that a non-finite value the device sees can only come from the error updates
  // (a numerically singular Hessian), which the solver reports as such.
  // A branch-free pass first (it vectorises: ~10^9 weights per 70B layer), the position only
  // when there is a bad value.
  bool finite = true;
  for (float w : weight) finite &= std::fabs(w) <= std::numeric_limits<float>::max();
  for (size_t i = 0; !finite && i < weight.size(); ++i) {
    if (!std::isfinite(weight[i])) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "GPTQ: non-finite weight value at row %d, column %d", i / cols, i % cols));
    }
  }
#if defined(FLATFLEET_GPTQ_CUDA)
  FF_ASSIGN_OR_RETURN(DeviceContext * context, Context());
  std::lock_guard<std::mutex> lock(context->mutex);
  const int64_t groups = cols / group_size;
  FF_ASSIGN_OR_RETURN(
      size_t workspace_bytes,
      cuda::GptqSolverWorkspaceBytes(rows, cols, options.block_size, context->cusolver));
  DeviceBytes d_weight, d_hessian, d_codes, d_scales, d_zeros, d_status, d_workspace, d_pre;
  FF_RETURN_IF_ERROR(d_weight.Allocate(sizeof(float) * rows * cols));
  FF_RETURN_IF_ERROR(d_hessian.Allocate(sizeof(double) * cols * cols));
  FF_RETURN_IF_ERROR(d_codes.Allocate(rows * cols));
  FF_RETURN_IF_ERROR(d_scales.Allocate(sizeof(uint16_t) * rows * groups));
  FF_RETURN_IF_ERROR(d_zeros.Allocate(rows * groups));
  FF_RETURN_IF_ERROR(d_status.Allocate(sizeof(cuda::GptqSolverStatus)));
  FF_RETURN_IF_ERROR(d_workspace.Allocate(workspace_bytes));
  if (pre_rounding != nullptr) {
    FF_RETURN_IF_ERROR(d_pre.Allocate(sizeof(float) * rows * cols));
    pre_rounding->resize(rows * cols);
  }
  cudaStream_t stream = context->stream;
  FF_RETURN_IF_ERROR(
      Cuda("upload weight", cudaMemcpyAsync(d_weight.as<void>(), weight.data(), d_weight.size(),
                                            cudaMemcpyHostToDevice, stream)));
  FF_RETURN_IF_ERROR(
      Cuda("upload Hessian", cudaMemcpyAsync(d_hessian.as<void>(), hessian.data(), d_hessian.size(),
                                             cudaMemcpyHostToDevice, stream)));
  FF_RETURN_IF_ERROR(
      Cuda("clear status", cudaMemsetAsync(d_status.as<void>(), 0, d_status.size(), stream)));
  cuda::DeviceGptqSolve solve;
  solve.rows = rows;
  solve.cols = cols;
  solve.format = {.bits = format.bits,
                  .symmetric = format.symmetric,
                  .balanced = format.balanced,
                  .group_size = format.group_size,
                  .clip_ratio = format.clip_ratio};
  solve.damp = options.damp;
  solve.block_size = options.block_size;
  solve.weight = d_weight.as<float>();
  solve.hessian = d_hessian.as<double>();
  solve.codes = d_codes.as<int8_t>();
  solve.scales = d_scales.as<uint16_t>();
  solve.zero_points = d_zeros.as<int8_t>();
  solve.status = d_status.as<cuda::GptqSolverStatus>();
  solve.workspace = d_workspace.as<void>();
  solve.workspace_bytes = workspace_bytes;
  solve.pre_rounding = pre_rounding != nullptr ? d_pre.as<float>() : nullptr;
  solve.cublas = context->cublas;
  solve.cusolver = context->cusolver;
  FF_RETURN_IF_ERROR(cuda::SolveGptqOnDevice(solve, stream));

  QuantizedMatrix out;
  out.rows = rows;
  out.cols = cols;
  out.format = format;
  out.codes.resize(rows * cols);
  out.scales.resize(rows * groups);
  if (!format.symmetric) out.zero_points.resize(rows * groups);
  cuda::GptqSolverStatus status;
  FF_RETURN_IF_ERROR(
      Cuda("download status", cudaMemcpyAsync(&status, d_status.as<void>(), sizeof(status),
                                              cudaMemcpyDeviceToHost, stream)));
  FF_RETURN_IF_ERROR(
      Cuda("download codes", cudaMemcpyAsync(out.codes.data(), d_codes.as<void>(), out.codes.size(),
                                             cudaMemcpyDeviceToHost, stream)));
  FF_RETURN_IF_ERROR(Cuda("download scales", cudaMemcpyAsync(out.scales.data(), d_scales.as<void>(),
                                                             sizeof(uint16_t) * out.scales.size(),
                                                             cudaMemcpyDeviceToHost, stream)));
  if (!format.symmetric) {
    FF_RETURN_IF_ERROR(
        Cuda("download zero points",
             cudaMemcpyAsync(out.zero_points.data(), d_zeros.as<void>(), out.zero_points.size(),
                             cudaMemcpyDeviceToHost, stream)));
  }
  if (pre_rounding != nullptr) {
    FF_RETURN_IF_ERROR(Cuda("download pre-rounding values",
                            cudaMemcpyAsync(pre_rounding->data(), d_pre.as<void>(), d_pre.size(),
                                            cudaMemcpyDeviceToHost, stream)));
  }
  FF_RETURN_IF_ERROR(Cuda("solve", cudaStreamSynchronize(stream)));
  FF_RETURN_IF_ERROR(cuda::GptqSolverError(status));
  FF_RETURN_IF_ERROR(out.Validate());
  return out;
#else
  return NoCuda();
#endif
}

absl::StatusOr<QuantizedMatrix> QuantizeGptqOnSelectedDevice(std::span<const float> weight,
                                                             int64_t rows, int64_t cols,
                                                             std::span<const double> hessian,
                                                             const QuantFormat& format,
                                                             const GptqOptions& options) {
  if (SelectedGptqDevice() == GptqDevice::kCuda && !options.act_order && !options.clip_search) {
    return QuantizeGptqOnDevice(weight, rows, cols, hessian, format, options);
  }
  return QuantizeGptq(weight, rows, cols, hessian, format, options);
}

absl::StatusOr<QuantizedMatrix> QuantizeGptqInPlaceOnSelectedDevice(std::span<const float> weight,
                                                                    int64_t rows, int64_t cols,
                                                                    std::span<double> hessian,
                                                                    const QuantFormat& format,
                                                                    const GptqOptions& options) {
  if (SelectedGptqDevice() == GptqDevice::kCuda && !options.act_order && !options.clip_search) {
    return QuantizeGptqOnDevice(weight, rows, cols, hessian, format, options);
  }
  return QuantizeGptqInPlace(weight, rows, cols, hessian, format, options);
}

absl::StatusOr<std::unique_ptr<DeviceGram>> DeviceGram::Create(int64_t cols) {
  if (cols <= 0) return absl::InvalidArgumentError("DeviceGram: cols must be positive");
#if defined(FLATFLEET_GPTQ_CUDA)
  FF_ASSIGN_OR_RETURN(DeviceContext * context, Context());
  std::lock_guard<std::mutex> lock(context->mutex);
  std::unique_ptr<DeviceGram> gram(new DeviceGram(cols));
  gram->state_ = std::make_unique<State>();
  FF_RETURN_IF_ERROR(gram->state_->gram.Allocate(sizeof(double) * cols * cols));
  FF_RETURN_IF_ERROR(
      Cuda("clear Gram", cudaMemsetAsync(gram->state_->gram.as<void>(), 0,
                                         gram->state_->gram.size(), context->stream)));
  return gram;
#else
  return NoCuda();
#endif
}

DeviceGram::DeviceGram(int64_t cols) : cols_(cols) {}

DeviceGram::~DeviceGram() {
#if defined(FLATFLEET_GPTQ_CUDA)
  // Pending work may still use the buffers.
  if (auto context = Context(); context.ok()) {
    std::lock_guard<std::mutex> lock((*context)->mutex);
    cudaStreamSynchronize((*context)->stream);
    state_.reset();
  }
#endif
}

absl::Status DeviceGram::Add(std::span<const float> rows, int64_t num_rows) {
  if (!sticky_.ok()) return sticky_;
  if (num_rows < 0 || static_cast<int64_t>(rows.size()) < num_rows * cols_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("DeviceGram: %d values for %d rows of %d", rows.size(), num_rows, cols_));
  }
  if (num_rows == 0) return absl::OkStatus();
#if defined(FLATFLEET_GPTQ_CUDA)
  absl::Status status = [&]() -> absl::Status {
    FF_ASSIGN_OR_RETURN(DeviceContext * context, Context());
    std::lock_guard<std::mutex> lock(context->mutex);
    const size_t row_bytes = sizeof(float) * num_rows * cols_;
    // The previous Add's work may still read the staging buffers.
    FF_RETURN_IF_ERROR(Cuda("sync", cudaStreamSynchronize(context->stream)));
    if (state_->rows.size() < row_bytes) FF_RETURN_IF_ERROR(state_->rows.Allocate(row_bytes));
    const size_t workspace_bytes =
        sizeof(double) * std::min<int64_t>(num_rows, kGramChunkRows) * cols_;
    if (state_->workspace.size() < workspace_bytes) {
      FF_RETURN_IF_ERROR(state_->workspace.Allocate(workspace_bytes));
    }
    FF_RETURN_IF_ERROR(
        Cuda("upload rows", cudaMemcpyAsync(state_->rows.as<void>(), rows.data(), row_bytes,
                                            cudaMemcpyHostToDevice, context->stream)));
    cuda::DeviceGramAccumulate accumulate;
    accumulate.rows = num_rows;
    accumulate.cols = cols_;
    accumulate.x = state_->rows.as<float>();
    accumulate.gram = state_->gram.as<double>();
    accumulate.workspace = state_->workspace.as<double>();
    accumulate.workspace_bytes = state_->workspace.size();
    accumulate.cublas = context->cublas;
    FF_RETURN_IF_ERROR(cuda::AccumulateGramOnDevice(accumulate, context->stream));
    // The host rows may be freed once this returns.
    return Cuda("upload", cudaStreamSynchronize(context->stream));
  }();
  if (!status.ok()) sticky_ = status;
  return status;
#else
  return NoCuda();
#endif
}

absl::StatusOr<std::vector<double>> DeviceGram::ToHost() const {
  if (!sticky_.ok()) return sticky_;
#if defined(FLATFLEET_GPTQ_CUDA)
  FF_ASSIGN_OR_RETURN(DeviceContext * context, Context());
  std::lock_guard<std::mutex> lock(context->mutex);
  FF_RETURN_IF_ERROR(
      cuda::MirrorGramUpperToLower(state_->gram.as<double>(), cols_, context->stream));
  // Symmetric, so column-major and row-major agree.
  std::vector<double> host(cols_ * cols_);
  FF_RETURN_IF_ERROR(
      Cuda("download Gram",
           cudaMemcpyAsync(host.data(), state_->gram.as<void>(), sizeof(double) * host.size(),
                           cudaMemcpyDeviceToHost, context->stream)));
  FF_RETURN_IF_ERROR(Cuda("download Gram", cudaStreamSynchronize(context->stream)));
  return host;
#else
  return NoCuda();
#endif
}

}  // namespace flatfleet::quant
