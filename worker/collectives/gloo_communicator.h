// Communicator over Gloo's TCP transport (CPU memory), rendezvousing through a gloo Store
// (FileStoreWithTimeout in tests, TcpStoreClient against the coordinator's TcpStoreServer).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "gloo/rendezvous/store.h"
#include "worker/collectives/communicator.h"

namespace gloo {
class Context;
}  // namespace gloo

namespace flatfleet::collectives {

struct GlooCommunicatorOptions {
  int rank = 0;
  int size = 1;
  // Bounds rendezvous and every collective; a silent peer becomes DeadlineExceeded after this.
  std::chrono::milliseconds timeout{30000};
  // Address this rank listens on for its peers.
  std::string hostname = "127.0.0.1";
  // Keeps several groups apart in one store (e.g. one per tensor-parallel group and generation).
  std::string store_prefix = "gloo";
};

class GlooCommunicator final : public Communicator {
 public:
  // Connects the full mesh; every rank of the group must call this with the same store.
  static absl::StatusOr<std::unique_ptr<GlooCommunicator>> Create(
      const GlooCommunicatorOptions& options, gloo::rendezvous::Store& store);
  ~GlooCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  absl::Status AllReduceSum(absl::Span<float> data) override;
  absl::Status AllGather(absl::Span<const std::byte> input, absl::Span<std::byte> output) override;
  absl::Status AllToAll(absl::Span<const std::byte> input, absl::Span<std::byte> output) override;
  absl::Status Broadcast(absl::Span<std::byte> data, int root) override;
  absl::Status Barrier() override;

 private:
  GlooCommunicator(std::shared_ptr<gloo::Context> context, const GlooCommunicatorOptions& options);

  // Runs one Gloo collective, converting its exceptions to a Status and poisoning the group.
  template <typename Operation>
  absl::Status Run(const char* name, Operation&& operation);
  // Tags keep consecutive collectives' messages apart; all ranks advance them in lockstep.
  uint32_t NextTag() { return next_tag_++; }

  std::shared_ptr<gloo::Context> context_;
  const int rank_;
  const int size_;
  const std::chrono::milliseconds timeout_;
  uint32_t next_tag_ = 1;
  absl::Status broken_;  // first error; once set every call fails
};

}  // namespace flatfleet::collectives
