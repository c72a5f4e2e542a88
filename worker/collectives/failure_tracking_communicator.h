// A Communicator decorator that remembers the first error of any collective run through it, so
// the owner of a tensor-parallel group can tell "the group broke" apart from a request's own
// failure after a forward pass (the model only reports that the forward failed).
#pragma once

#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "worker/collectives/communicator.h"

namespace flatfleet::collectives {

class FailureTrackingCommunicator final : public Communicator {
 public:
  explicit FailureTrackingCommunicator(std::unique_ptr<Communicator> inner)
      : inner_(std::move(inner)) {}

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  absl::Status AllReduceSum(absl::Span<float> data) override {
    return Track(inner_->AllReduceSum(data));
  }
  absl::Status AllGather(absl::Span<const std::byte> input, absl::Span<std::byte> output) override {
    return Track(inner_->AllGather(input, output));
  }
  absl::Status AllToAll(absl::Span<const std::byte> input, absl::Span<std::byte> output) override {
    return Track(inner_->AllToAll(input, output));
  }
  absl::Status Broadcast(absl::Span<std::byte> data, int root) override {
    return Track(inner_->Broadcast(data, root));
  }
  absl::Status Barrier() override { return Track(inner_->Barrier()); }

  // Records a failure of the group's other collectives (the device ones,
  // failure_tracking_stream_collectives.h) as if a collective here had failed.
  void RecordFailure(const absl::Status& status) { Track(status).IgnoreError(); }

  // OK until a collective fails; then that first error.
  absl::Status first_error() const {
    absl::MutexLock lock(&mutex_);
    return first_error_;
  }

 private:
  absl::Status Track(absl::Status status) {
    if (!status.ok()) {
      absl::MutexLock lock(&mutex_);
      if (first_error_.ok()) first_error_ = status;
    }
    return status;
  }

  std::unique_ptr<Communicator> inner_;
  mutable absl::Mutex mutex_;
  absl::Status first_error_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace flatfleet::collectives
