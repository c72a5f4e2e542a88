// --device / --gpu / --gpu-memory-fraction / --kv-cache-dtype, shared by the commands that run a
// model, and the one line on stderr that says where it runs.
#pragma once

#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "worker/model/device_selection.h"

namespace flatfleet::tools {

inline void AddDeviceFlags(CLI::App* cmd, engine::DeviceOptions* options, bool kv_dtype = false) {
  cmd->add_option("--device", options->device,
                  "cpu (float32 reference) or cuda (bf16 GPU engine); auto: cuda when a GPU is "
                  "visible")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--gpu", options->gpu, "CUDA device index")->capture_default_str();
  cmd->add_option("--gpu-memory-fraction", options->gpu_memory_fraction,
                  "Share of the GPU's memory for weights, workspace and the KV cache")
      ->check(CLI::Range(0.01, 1.0))
      ->capture_default_str();
  if (kv_dtype) {
    cmd->add_option("--kv-cache-dtype", options->kv_cache_dtype,
                    "KV cache storage: auto (float32 on cpu, bf16 on cuda), float32, bf16, int8")
        ->check(CLI::IsMember({"auto", "float32", "bf16", "int8"}))
        ->capture_default_str();
  }
}

// The backend, having said on stderr which it is.
inline absl::StatusOr<engine::SelectedBackend> OpenDevice(const engine::DeviceOptions& options,
                                                          const char* command) {
  absl::StatusOr<engine::SelectedBackend> selected = engine::SelectBackend(options);
  if (selected.ok()) {
    std::fprintf(stderr, "flatfleet %s: running on %s%s%s%s\n", command,
                 selected->description.c_str(), selected->reason.empty() ? "" : " (",
                 selected->reason.c_str(), selected->reason.empty() ? "" : ")");
  }
  return selected;
}

}  // namespace flatfleet::tools
