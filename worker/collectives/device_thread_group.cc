#include "worker/collectives/device_thread_group.h"

#include <utility>

#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "kernels/cuda/rank_sum.h"
#include "worker/collectives/nccl_status.h"

namespace flatfleet::collectives {
namespace {

absl::Status CheckPointers(int64_t bytes, const void* a, const void* b, const char* call) {
  if (bytes < 0) return absl::InvalidArgumentError(absl::StrFormat("%s: negative size", call));
  if (bytes > 0 && (a == nullptr || b == nullptr)) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: null device pointer", call));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceThreadGroup>> DeviceThreadGroup::Create(
    int size, int device, std::chrono::milliseconds timeout) {
  if (size < 1 || size > cuda::kMaxRankSumInputs) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "device thread group: size %d is outside [1, %d]", size, cuda::kMaxRankSumInputs));
  }
  if (timeout.count() <= 0) return absl::InvalidArgumentError("timeout must be positive");
  int devices = 0;
  FF_RETURN_IF_ERROR(CudaStatus(cudaGetDeviceCount(&devices), "cudaGetDeviceCount"));
  if (device < 0 || device >= devices) {
    return absl::InvalidArgumentError(
        absl::StrFormat("device %d does not exist (%d CUDA devices)", device, devices));
  }
  std::unique_ptr<DeviceThreadGroup> group(new DeviceThreadGroup(device, timeout));
  FF_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device), "cudaSetDevice"));
  group->slots_.resize(size);
  for (Slot& slot : group->slots_) {
    for (cudaEvent_t* event : {&slot.ready, &slot.done}) {
      FF_RETURN_IF_ERROR(CudaStatus(cudaEventCreateWithFlags(event, cudaEventDisableTiming),
                                    "cudaEventCreateWithFlags"));
    }
  }
  for (int rank = 0; rank < size; ++rank) {
    group->ranks_.push_back(std::unique_ptr<DeviceThreadGroupCommunicator>(
        new DeviceThreadGroupCommunicator(*group, rank)));
    FF_RETURN_IF_ERROR(group->ranks_.back()->Initialize());
  }
  return group;
}

DeviceThreadGroup::~DeviceThreadGroup() {
  ranks_.clear();
  for (Slot& slot : slots_) {
    if (slot.ready != nullptr) cudaEventDestroy(slot.ready);
    if (slot.done != nullptr) cudaEventDestroy(slot.done);
  }
}

absl::Status DeviceThreadGroup::Arrive(int rank) {
  absl::MutexLock lock(&mutex_);
  if (!broken_.ok()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("device thread group failed earlier: %s", broken_.message()));
  }
  const int64_t generation = generation_;
  if (++arrived_ == size()) {
    arrived_ = 0;
    ++generation_;
    return absl::OkStatus();
  }
  auto released = [this, generation]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    return generation_ != generation || !broken_.ok();
  };
  if (!mutex_.AwaitWithTimeout(absl::Condition(&released), absl::FromChrono(timeout_))) {
    broken_ = absl::DeadlineExceededError(
        absl::StrFormat("rank %d waited %d ms for the other ranks of a %d-rank device thread group",
                        rank, timeout_.count(), size()));
  }
  if (generation_ != generation) return absl::OkStatus();
  return broken_;
}

absl::Status DeviceThreadGroupCommunicator::Initialize() {
  return CudaStatus(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                    "cudaStreamCreateWithFlags");
}

DeviceThreadGroupCommunicator::~DeviceThreadGroupCommunicator() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  if (scratch_ != nullptr) cudaFree(scratch_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::StatusOr<void*> DeviceThreadGroupCommunicator::Scratch(int64_t bytes) {
  if (bytes <= scratch_bytes_) return scratch_;
  FF_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"));
  if (scratch_ != nullptr) cudaFree(scratch_);
  scratch_ = nullptr;
  scratch_bytes_ = 0;
  FF_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&scratch_, bytes), "cudaMalloc"));
  scratch_bytes_ = bytes;
  return scratch_;
}

template <typename Reads>
absl::Status DeviceThreadGroupCommunicator::Exchange(const void* input, void* output,
                                                     Reads&& reads) {
  FF_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(group_.device_), "cudaSetDevice"));
  DeviceThreadGroup::Slot& mine = group_.slots_[rank_];
  mine.input = input;
  mine.output = output;
  FF_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(mine.ready, stream_), "cudaEventRecord"));
  FF_RETURN_IF_ERROR(group_.Arrive(rank_));
  absl::Status status;
  for (int peer = 0; peer < size() && status.ok(); ++peer) {
    if (peer == rank_) continue;
    status = CudaStatus(cudaStreamWaitEvent(stream_, group_.slots_[peer].ready, 0),
                        "cudaStreamWaitEvent");
  }
  if (status.ok()) status = reads();
  // Arrive even after an error: the peers are waiting for this rank.
  const absl::Status recorded = CudaStatus(cudaEventRecord(mine.done, stream_), "cudaEventRecord");
  FF_RETURN_IF_ERROR(group_.Arrive(rank_));
  FF_RETURN_IF_ERROR(status);
  FF_RETURN_IF_ERROR(recorded);
  for (int peer = 0; peer < size(); ++peer) {
    if (peer == rank_) continue;
    FF_RETURN_IF_ERROR(CudaStatus(cudaStreamWaitEvent(stream_, group_.slots_[peer].done, 0),
                                  "cudaStreamWaitEvent"));
  }
  return absl::OkStatus();
}

absl::Status DeviceThreadGroupCommunicator::AllReduce(void* data, int64_t count, bool bf16) {
  const char* call = bf16 ? "AllReduceSumBFloat16" : "AllReduceSum";
  FF_RETURN_IF_ERROR(CheckPointers(count, data, data, call));
  const int64_t bytes = count * (bf16 ? 2 : 4);
  // Every rank takes part even for 0 elements (collectives are matched by order).
  void* sum = nullptr;
  if (bytes > 0) {
    FF_ASSIGN_OR_RETURN(sum, Scratch(bytes));
  }
  FF_RETURN_IF_ERROR(Exchange(data, data, [&] {
    cuda::DeviceRankSum args;
    args.num_inputs = size();
    for (int r = 0; r < size(); ++r) args.inputs[r] = group_.slots_[r].input;
    args.count = count;
    args.type = bf16 ? cuda::GemmElementType::kBf16 : cuda::GemmElementType::kFloat32;
    args.output = sum;
    return cuda::SumRanks(args, stream_);
  }));
  if (bytes == 0) return absl::OkStatus();
  // Only now, after every peer has read `data`, may it be overwritten.
  return CudaStatus(cudaMemcpyAsync(data, sum, bytes, cudaMemcpyDeviceToDevice, stream_),
                    "cudaMemcpyAsync");
}

absl::Status DeviceThreadGroupCommunicator::AllReduceSum(float* data, int64_t count) {
  return AllReduce(data, count, /*bf16=*/false);
}

absl::Status DeviceThreadGroupCommunicator::AllReduceSumBFloat16(void* data, int64_t count) {
  return AllReduce(data, count, /*bf16=*/true);
}

absl::Status DeviceThreadGroupCommunicator::AllGather(const void* input, int64_t bytes_per_rank,
                                                      void* output) {
  FF_RETURN_IF_ERROR(CheckPointers(bytes_per_rank, input, output, "AllGather"));
  return Exchange(input, output, [&]() -> absl::Status {
    auto* out = static_cast<std::byte*>(output);
    for (int source = 0; source < size(); ++source) {
      std::byte* slot = out + source * bytes_per_rank;
      const void* from = group_.slots_[source].input;
      if (bytes_per_rank == 0 || from == slot) continue;  // in place
      FF_RETURN_IF_ERROR(
          CudaStatus(cudaMemcpyAsync(slot, from, bytes_per_rank, cudaMemcpyDeviceToDevice, stream_),
                     "cudaMemcpyAsync (AllGather)"));
    }
    return absl::OkStatus();
  });
}

absl::Status DeviceThreadGroupCommunicator::AllToAll(const void* input, int64_t bytes_per_slot,
                                                     void* output) {
  FF_RETURN_IF_ERROR(CheckPointers(bytes_per_slot, input, output, "AllToAll"));
  const auto* in = static_cast<const std::byte*>(input);
  auto* out = static_cast<std::byte*>(output);
  if (bytes_per_slot > 0 && in < out + size() * bytes_per_slot &&
      out < in + size() * bytes_per_slot) {
    return absl::InvalidArgumentError("AllToAll: input and output overlap");
  }
  return Exchange(input, output, [&]() -> absl::Status {
    for (int source = 0; source < size() && bytes_per_slot > 0; ++source) {
      const auto* from =
          static_cast<const std::byte*>(group_.slots_[source].input) + rank_ * bytes_per_slot;
      FF_RETURN_IF_ERROR(
          CudaStatus(cudaMemcpyAsync(out + source * bytes_per_slot, from, bytes_per_slot,
                                     cudaMemcpyDeviceToDevice, stream_),
                     "cudaMemcpyAsync (AllToAll)"));
    }
    return absl::OkStatus();
  });
}

absl::Status DeviceThreadGroupCommunicator::Broadcast(void* data, int64_t bytes, int root) {
  FF_RETURN_IF_ERROR(CheckPointers(bytes, data, data, "Broadcast"));
  if (root < 0 || root >= size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Broadcast: root %d is outside a group of %d", root, size()));
  }
  return Exchange(data, data, [&]() -> absl::Status {
    if (rank_ == root || bytes == 0) return absl::OkStatus();
    return CudaStatus(
        cudaMemcpyAsync(data, group_.slots_[root].input, bytes, cudaMemcpyDeviceToDevice, stream_),
        "cudaMemcpyAsync (Broadcast)");
  });
}

absl::Status DeviceThreadGroupCommunicator::Barrier() {
  FF_RETURN_IF_ERROR(Exchange(nullptr, nullptr, [] { return absl::OkStatus(); }));
  return Synchronize();
}

absl::Status DeviceThreadGroupCommunicator::Synchronize() {
  FF_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(group_.device_), "cudaSetDevice"));
  return CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
}

}  // namespace flatfleet::collectives
