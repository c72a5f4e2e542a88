// Captured CUDA graphs keyed by an integer (the decode batch bucket): the first step of a bucket
// runs its kernels under stream capture and instantiates them; later steps of that bucket replay
// the executable graph with one launch. Replays read the same device addresses as the capture, so
// everything they read (step metadata, scratch) must live at fixed addresses: the engine's
// metadata buffer and workspace arena guarantee that.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <map>

#include "absl/status/status.h"

namespace flatfleet::runtime::cuda {

class CudaGraphCache {
 public:
  CudaGraphCache() = default;
  ~CudaGraphCache();
  CudaGraphCache(const CudaGraphCache&) = delete;
  CudaGraphCache& operator=(const CudaGraphCache&) = delete;

  bool Contains(int64_t key) const { return graphs_.contains(key); }
  absl::Status BeginCapture(cudaStream_t stream);
  // Ends the capture begun on `stream` and stores the executable graph under `key`.
  absl::Status EndCapture(cudaStream_t stream, int64_t key);
  absl::Status Launch(int64_t key, cudaStream_t stream) const;
  void Erase(int64_t key);
  int64_t size() const { return static_cast<int64_t>(graphs_.size()); }

 private:
  std::map<int64_t, cudaGraphExec_t> graphs_;
};

}  // namespace flatfleet::runtime::cuda
