#include "worker/model/device_selection.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu/cpu_backend.h"

#ifdef FLATFLEET_HAVE_CUDA
#include "kernels/cuda/backend/cuda_backend.h"
#include "runtime/cuda/device_info.h"
#endif

namespace flatfleet::engine {

bool BuiltWithCuda() {
#ifdef FLATFLEET_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

absl::StatusOr<SelectedBackend> SelectBackend(const DeviceOptions& options) {
  if (options.device != "auto" && options.device != "cpu" && options.device != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("--device: expected auto, cpu or cuda, got '", options.device, "'"));
  }
  if (options.kv_cache_dtype != "auto" && options.kv_cache_dtype != "bf16" &&
      options.kv_cache_dtype != "int8" && options.kv_cache_dtype != "float32") {
    return absl::InvalidArgumentError(
        absl::StrCat("--kv-cache-dtype: expected auto, float32, bf16 or int8, got '",
                     options.kv_cache_dtype, "'"));
  }
  SelectedBackend selected;
  bool use_cuda = options.device == "cuda";
  if (options.device == "auto") {
#ifdef FLATFLEET_HAVE_CUDA
    FF_ASSIGN_OR_RETURN(int devices, runtime::cuda::CountDevices());
    use_cuda = devices > 0;
    selected.reason = use_cuda ? "a GPU is visible" : "no CUDA device is visible";
#else
    selected.reason = "this build has no CUDA backend";
#endif
  }
  if (!use_cuda) {
    selected.backend = &kernels::cpu::DefaultCpuBackend();
    selected.description = "cpu";
    return selected;
  }
#ifdef FLATFLEET_HAVE_CUDA
  kernels::cuda_backend::CudaBackendOptions cuda;
  cuda.device = options.gpu;
  cuda.gpu_memory_fraction = options.gpu_memory_fraction;
  if (options.kv_cache_dtype == "float32") {
    return absl::InvalidArgumentError("--kv-cache-dtype float32 is the CPU's; use bf16 or int8");
  }
  cuda.kv_dtype =
      options.kv_cache_dtype == "int8" ? kernels::KvDtype::kInt8 : kernels::KvDtype::kBFloat16;
  FF_ASSIGN_OR_RETURN(std::unique_ptr<kernels::cuda_backend::CudaBackend> backend,
                      kernels::cuda_backend::CudaBackend::Create(cuda));
  FF_ASSIGN_OR_RETURN(std::string device, runtime::cuda::DescribeDevice(options.gpu));
  selected.owned = std::move(backend);
  selected.backend = selected.owned.get();
  selected.cuda = true;
  selected.description = absl::StrCat("cuda:", options.gpu, " (", device, ")");
  return selected;
#else
  return absl::FailedPreconditionError(
      "--device cuda: this flatfleet was built without the CUDA backend (configure with "
      "-DFLATFLEET_CUDA=ON)");
#endif
}

}  // namespace flatfleet::engine
