#include "runtime/cuda/cuda_graph.h"

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_status.h"

namespace flatfleet::runtime::cuda {

CudaGraphCache::~CudaGraphCache() {
  for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
}

absl::Status CudaGraphCache::BeginCapture(cudaStream_t stream) {
  // Thread-local mode: other threads' legal CUDA calls do not invalidate this capture.
  FF_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  return absl::OkStatus();
}

absl::Status CudaGraphCache::EndCapture(cudaStream_t stream, int64_t key) {
  cudaGraph_t graph = nullptr;
  FF_CUDA_RETURN_IF_ERROR(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t error = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  FF_CUDA_RETURN_IF_ERROR(error);
  auto [it, inserted] = graphs_.emplace(key, exec);
  if (!inserted) {
    cudaGraphExecDestroy(it->second);
    it->second = exec;
  }
  return absl::OkStatus();
}

void CudaGraphCache::Erase(int64_t key) {
  auto it = graphs_.find(key);
  if (it == graphs_.end()) return;
  cudaGraphExecDestroy(it->second);
  graphs_.erase(it);
}

absl::Status CudaGraphCache::Launch(int64_t key, cudaStream_t stream) const {
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    return absl::NotFoundError(absl::StrCat("CUDA graph for bucket ", key, " was not captured"));
  }
  FF_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(it->second, stream));
  return absl::OkStatus();
}

}  // namespace flatfleet::runtime::cuda
