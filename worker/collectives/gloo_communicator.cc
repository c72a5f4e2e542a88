#include "worker/collectives/gloo_communicator.h"

#include <cstring>
#include <exception>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gloo/allgather.h"
#include "gloo/allreduce.h"
#include "gloo/alltoall.h"
#include "gloo/barrier.h"
#include "gloo/broadcast.h"
#include "gloo/common/error.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/prefix_store.h"
#include "gloo/transport/tcp/device.h"

namespace flatfleet::collectives {
namespace {

// Gloo reports a silent peer as "Timed out ..." (stores: "Wait timeout ...", ours:
// DEADLINE_EXCEEDED); anything else is a dropped connection or a failed peer.
absl::Status StatusFromGlooError(const char* operation, int rank, const std::exception& error) {
  const std::string message =
      absl::StrFormat("gloo %s on rank %d: %s", operation, rank, error.what());
  const std::string lower = absl::AsciiStrToLower(error.what());
  if (absl::StrContains(lower, "timed out") || absl::StrContains(lower, "timeout") ||
      absl::StrContains(lower, "deadline_exceeded")) {
    return absl::DeadlineExceededError(message);
  }
  return absl::UnavailableError(message);
}

absl::Status CheckSlots(size_t input_bytes, size_t output_bytes, size_t input_multiple,
                        size_t output_multiple, const char* operation) {
  if (input_bytes * input_multiple != output_bytes * output_multiple) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: input of %d bytes does not match output of %d bytes", operation,
                        input_bytes, output_bytes));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<GlooCommunicator>> GlooCommunicator::Create(
    const GlooCommunicatorOptions& options, gloo::rendezvous::Store& store) {
  if (options.size <= 0 || options.rank < 0 || options.rank >= options.size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("rank %d is outside a group of %d", options.rank, options.size));
  }
  if (options.timeout.count() <= 0) return absl::InvalidArgumentError("timeout must be positive");
  try {
    gloo::transport::tcp::attr attr;
    attr.hostname = options.hostname;
    std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(options.rank, options.size);
    context->setTimeout(options.timeout);
    gloo::rendezvous::PrefixStore prefixed(options.store_prefix, store);
    context->connectFullMesh(prefixed, device);
    return std::unique_ptr<GlooCommunicator>(new GlooCommunicator(std::move(context), options));
  } catch (const std::exception& error) {
    return StatusFromGlooError("rendezvous", options.rank, error);
  }
}

GlooCommunicator::GlooCommunicator(std::shared_ptr<gloo::Context> context,
                                   const GlooCommunicatorOptions& options)
    : context_(std::move(context)),
      rank_(options.rank),
      size_(options.size),
      timeout_(options.timeout) {}

GlooCommunicator::~GlooCommunicator() = default;

template <typename Operation>
absl::Status GlooCommunicator::Run(const char* name, Operation&& operation) {
  if (!broken_.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("communicator unusable after an earlier error: ", broken_.message()));
  }
  try {
    operation();
    return absl::OkStatus();
  } catch (const std::exception& error) {
    broken_ = StatusFromGlooError(name, rank_, error);
    // Dropping our connections lets the other ranks fail fast instead of waiting for their timeout.
    try {
      context_->closeConnections();
    } catch (const std::exception&) {
    }
    return broken_;
  }
}

absl::Status GlooCommunicator::AllReduceSum(absl::Span<float> data) {
  if (size_ == 1 || data.empty()) return absl::OkStatus();
  return Run("all-reduce", [&] {
    gloo::AllreduceOptions options(context_);
    options.setOutput(data.data(), data.size());
    options.setReduceFunction(
        static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
    options.setTag(NextTag());
    options.setTimeout(timeout_);
    gloo::allreduce(options);
  });
}

absl::Status GlooCommunicator::AllGather(absl::Span<const std::byte> input,
                                         absl::Span<std::byte> output) {
  if (absl::Status status = CheckSlots(input.size(), output.size(), size_, 1, "all-gather");
      !status.ok()) {
    return status;
  }
  if (size_ == 1 || input.empty()) {
    if (!input.empty()) std::memcpy(output.data(), input.data(), input.size());
    return absl::OkStatus();
  }
  return Run("all-gather", [&] {
    gloo::AllgatherOptions options(context_);
    // Gloo's buffers are not const-qualified; it only reads the input.
    options.setInput(const_cast<std::byte*>(input.data()), input.size());
    options.setOutput(output.data(), output.size());
    options.setTag(NextTag());
    options.setTimeout(timeout_);
    gloo::allgather(options);
  });
}

absl::Status GlooCommunicator::AllToAll(absl::Span<const std::byte> input,
                                        absl::Span<std::byte> output) {
  if (absl::Status status = CheckSlots(input.size(), output.size(), 1, 1, "all-to-all");
      !status.ok()) {
    return status;
  }
  if (input.size() % size_ != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "all-to-all: %d bytes do not split into %d equal slots", input.size(), size_));
  }
  if (size_ == 1 || input.empty()) {
    if (!input.empty()) std::memcpy(output.data(), input.data(), input.size());
    return absl::OkStatus();
  }
  return Run("all-to-all", [&] {
    gloo::AlltoallOptions options(context_);
    options.setInput(const_cast<std::byte*>(input.data()), input.size());
    options.setOutput(output.data(), output.size());
    options.setTag(NextTag());
    options.setTimeout(timeout_);
    gloo::alltoall(options);
  });
}

absl::Status GlooCommunicator::Broadcast(absl::Span<std::byte> data, int root) {
  if (root < 0 || root >= size_) {
    return absl::InvalidArgumentError(absl::StrFormat("broadcast root %d out of range", root));
  }
  if (size_ == 1 || data.empty()) return absl::OkStatus();
  return Run("broadcast", [&] {
    gloo::BroadcastOptions options(context_);
    options.setOutput(data.data(), data.size());
    options.setRoot(root);
    options.setTag(NextTag());
    options.setTimeout(timeout_);
    gloo::broadcast(options);
  });
}

absl::Status GlooCommunicator::Barrier() {
  if (size_ == 1) return absl::OkStatus();
  return Run("barrier", [&] {
    gloo::BarrierOptions options(context_);
    options.setTag(NextTag());
    options.setTimeout(timeout_);
    gloo::barrier(options);
  });
}

}  // namespace flatfleet::collectives
