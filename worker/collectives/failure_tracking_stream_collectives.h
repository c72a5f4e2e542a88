// A StreamCollectives decorator that reports every error into the group's
// FailureTrackingCommunicator, so that an NCCL failure inside a forward pass (a peer gone, a
// timeout that aborted the communicator) fails the group exactly as a Gloo failure does: the
// leader sees first_error() after the step and marks every rank FAILED.
#pragma once

#include <memory>
#include <utility>

#include "worker/collectives/failure_tracking_communicator.h"
#include "worker/collectives/stream_collectives.h"

namespace flatfleet::collectives {

class FailureTrackingStreamCollectives final : public StreamCollectives {
 public:
  // `tracker` must outlive this object.
  FailureTrackingStreamCollectives(std::unique_ptr<StreamCollectives> inner,
                                   FailureTrackingCommunicator& tracker)
      : inner_(std::move(inner)), tracker_(tracker) {}

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  absl::Status AllReduceSum(void* data, int64_t count, DeviceElementType type, bool exact,
                            void* stream) override {
    return Track(inner_->AllReduceSum(data, count, type, exact, stream));
  }
  absl::Status GatherColumns(const float* local, int64_t rows, std::span<const int64_t> begins,
                             std::span<const int64_t> widths, float* scratch, float* full,
                             int64_t full_cols, void* stream) override {
    return Track(
        inner_->GatherColumns(local, rows, begins, widths, scratch, full, full_cols, stream));
  }
  absl::Status Synchronize() override { return Track(inner_->Synchronize()); }
  AllReduceStats stats() const override { return inner_->stats(); }

 private:
  absl::Status Track(absl::Status status) {
    if (!status.ok()) tracker_.RecordFailure(status);
    return status;
  }

  std::unique_ptr<StreamCollectives> inner_;
  FailureTrackingCommunicator& tracker_;
};

}  // namespace flatfleet::collectives
