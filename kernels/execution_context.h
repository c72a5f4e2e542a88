// Per-engine execution state a backend keeps for one model: the stream its kernels run on (CUDA),
// the workspace arena scratch activations come from, and the current step's metadata (uploaded
// once per step). The model owns one; backends stay shareable between models.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/step_batch.h"
#include "runtime/tensor_view.h"

namespace flatfleet::kernels {

class ExecutionContext {
 public:
  virtual ~ExecutionContext() = default;

  // Sizes the arena for steps that need up to `bytes` of scratch (at start-up, or between steps:
  // the last step's scratch is released).
  virtual absl::Status ReserveWorkspace(int64_t bytes) = 0;
  // Scratch from the arena, valid until the next BeginStep.
  virtual absl::StatusOr<runtime::TensorView> Scratch(runtime::ScalarType type, int64_t rows,
                                                      int64_t cols) = 0;
  // Starts a step: resets the arena and makes `batch` visible to the ops (a device copy on GPUs).
  virtual absl::Status BeginStep(const StepBatch& batch) = 0;
  const StepBatch& step() const { return step_; }
  // Waits for the step's work (a no-op on the host).
  virtual absl::Status Synchronize() = 0;
  // Per-op-category device time ("gemm", "attention", "norm", "moe", "sampling", "other"), for
  // benchmarks: off by default (the timing events cost about a microsecond per op). TakeOpTimes
  // waits for the recorded work and returns the seconds since the last call.
  virtual void EnableOpTiming(bool on) {}
  virtual std::map<std::string, double> TakeOpTimes() { return {}; }
  // CUDA graphs of decode steps (one per StepBatch::graph_bucket). Between BeginGraphCapture and
  // EndGraphCapture the ops are recorded, not run; LaunchGraph replays a bucket's graph on the
  // current step's metadata. Anything that moves the buffers a graph reads (a workspace or
  // metadata buffer that grows) drops the graphs, which are then captured again.
  virtual bool supports_graphs() const { return false; }
  virtual bool HasGraph(int64_t bucket) const { return false; }
  virtual void DropGraphs() {}
  virtual absl::Status BeginGraphCapture() { return absl::UnimplementedError("no CUDA graphs"); }
  virtual absl::Status EndGraphCapture(int64_t bucket, bool keep) {
    return absl::UnimplementedError("no CUDA graphs");
  }
  virtual absl::Status LaunchGraph(int64_t bucket) {
    return absl::UnimplementedError("no CUDA graphs");
  }
  // The CUDA stream the ops run on, as an opaque handle (a cudaStream_t), for work the model
  // enqueues next to them (tensor-parallel collectives); null on host backends.
  virtual void* native_stream() const { return nullptr; }
  virtual int64_t workspace_capacity() const = 0;
  virtual int64_t workspace_high_water() const = 0;

 protected:
  StepBatch step_;
};

}  // namespace flatfleet::kernels
