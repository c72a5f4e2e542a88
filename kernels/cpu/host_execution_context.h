// The CPU backends' execution context: a host workspace arena that grows on demand (host memory
// is cheap to extend between steps) and the current step's metadata, read in place.
#pragma once

#include "kernels/execution_context.h"
#include "runtime/workspace_arena.h"

namespace flatfleet::kernels::cpu {

class HostExecutionContext final : public ExecutionContext {
 public:
  HostExecutionContext() { arena_.set_growable(true); }
  // Between steps: no view of the last step's scratch is alive any more.
  absl::Status ReserveWorkspace(int64_t bytes) override {
    arena_.Reset();
    return arena_.Reserve(static_cast<size_t>(bytes));
  }
  absl::StatusOr<runtime::TensorView> Scratch(runtime::ScalarType type, int64_t rows,
                                              int64_t cols) override {
    return arena_.Take(type, rows, cols);
  }
  absl::Status BeginStep(const StepBatch& batch) override {
    arena_.Reset();
    step_ = batch;
    return absl::OkStatus();
  }
  absl::Status Synchronize() override { return absl::OkStatus(); }
  int64_t workspace_capacity() const override { return arena_.capacity(); }
  int64_t workspace_high_water() const override { return arena_.high_water(); }

 private:
  runtime::WorkspaceArena arena_;
};

}  // namespace flatfleet::kernels::cpu
