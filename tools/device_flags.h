// --device / --gpu / --gpu-memory-fraction / --kv-cache-dtype, shared by the commands that run a
// model, and the one line on stderr that says where it runs.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "worker/model/device_selection.h"
#include "worker/model/llama_weights.h"

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

// A load progress line on stderr: rewritten in place on a terminal, every quarter otherwise.
inline engine::WeightLoadProgress LoadProgressLine(const char* command) {
  const auto start = std::chrono::steady_clock::now();
  const bool terminal = isatty(fileno(stderr)) != 0;
  return [command, start, terminal, last_quarter = int64_t{-1}](int64_t done, int64_t total,
                                                                int64_t bytes) mutable {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const int64_t quarter = total > 0 ? 4 * done / total : 4;
    if (!terminal && quarter == last_quarter) return;
    last_quarter = quarter;
    const double eta = done > 0 ? seconds * static_cast<double>(total - done) / done : 0.0;
    std::fprintf(stderr,
                 "%sflatfleet %s: loaded %lld/%lld layers, %.2f GB (as float32), %.1f s, "
                 "ETA %.1f s%s",
                 terminal ? "\r" : "", command, static_cast<long long>(done),
                 static_cast<long long>(total), static_cast<double>(bytes) / 1e9, seconds, eta,
                 terminal && done < total ? "" : "\n");
  };
}

}  // namespace flatfleet::tools
