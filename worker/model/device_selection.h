// Which backend a command runs on: `--device cpu|cuda` (default: cuda when this build has the
// CUDA backend and a GPU is visible, else cpu). The CPU is the float32 reference; CUDA is the
// bf16 GPU engine (kernels/cuda/backend/).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace flatfleet::engine {

struct DeviceOptions {
  std::string device = "auto";  // auto, cpu, cuda
  int gpu = 0;                  // CUDA device index
  double gpu_memory_fraction = 0.9;
  std::string kv_cache_dtype = "auto";  // auto (the backend's), bf16, int8 (cuda)
};

struct SelectedBackend {
  // Null for the CPU: the process-wide float32 backend (kernels::cpu::DefaultCpuBackend()).
  std::shared_ptr<kernels::Backend> owned;
  kernels::Backend* backend = nullptr;
  bool cuda = false;
  std::string description;  // "cuda:0 (NVIDIA H200, sm_90, 139.8 GiB)" or "cpu"
  std::string reason;       // why auto chose it
};

// True when this binary was built with the CUDA backend.
bool BuiltWithCuda();

absl::StatusOr<SelectedBackend> SelectBackend(const DeviceOptions& options);

}  // namespace flatfleet::engine
