#include "worker/collectives/nccl_communicator.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/collectives/nccl_status.h"

namespace flatfleet::collectives {
namespace {

// Makes `device` current for the scope and restores the caller's device afterwards.
class ScopedDevice {
 public:
  explicit ScopedDevice(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    if (previous_ != device) status_ = CudaStatus(cudaSetDevice(device), "cudaSetDevice");
  }
  ~ScopedDevice() {
    int current = -1;
    if (previous_ >= 0 && cudaGetDevice(&current) == cudaSuccess && current != previous_) {
      cudaSetDevice(previous_);
    }
  }
  const absl::Status& status() const { return status_; }

 private:
  int previous_ = -1;
  absl::Status status_;
};

// Spins briefly (collectives of a few microseconds), then sleeps between polls.
class Backoff {
 public:
  void Pause() {
    if (++polls_ < 2000) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

 private:
  int polls_ = 0;
};

absl::Status CheckBytes(int64_t bytes, const void* a, const void* b, const char* call) {
  if (bytes < 0) return absl::InvalidArgumentError(absl::StrFormat("%s: negative size", call));
  if (bytes > 0 && (a == nullptr || b == nullptr)) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: null device pointer", call));
  }
  return absl::OkStatus();
}

}  // namespace

void DisableNvlsUnlessSet() {
  // NVLink SHARP (NVLS) needs multicast objects the lent machines do not give (and a fabric
  // manager); NCCL reads its environment once, at the first init, so this runs before any.
  static std::once_flag once;
  std::call_once(once, [] { setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0); });
}

absl::StatusOr<std::string> CreateNcclUniqueId() {
  DisableNvlsUnlessSet();
  ncclUniqueId id;
  FF_RETURN_IF_ERROR(NcclStatus(ncclGetUniqueId(&id), "ncclGetUniqueId"));
  return std::string(id.internal, sizeof(id.internal));
}

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(
    const NcclCommunicatorOptions& options) {
  if (options.size <= 0 || options.rank < 0 || options.rank >= options.size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("rank %d is outside a group of %d", options.rank, options.size));
  }
  if (options.unique_id.size() != NCCL_UNIQUE_ID_BYTES) {
    return absl::InvalidArgumentError(absl::StrFormat("nccl_unique_id has %d bytes, expected %d",
                                                      options.unique_id.size(),
                                                      NCCL_UNIQUE_ID_BYTES));
  }
  if (options.timeout.count() <= 0) return absl::InvalidArgumentError("timeout must be positive");
  int devices = 0;
  FF_RETURN_IF_ERROR(CudaStatus(cudaGetDeviceCount(&devices), "cudaGetDeviceCount"));
  if (options.device < 0 || options.device >= devices) {
    return absl::InvalidArgumentError(
        absl::StrFormat("device %d does not exist (%d CUDA devices)", options.device, devices));
  }
  std::unique_ptr<NcclCommunicator> communicator(new NcclCommunicator(options));
  FF_RETURN_IF_ERROR(communicator->Initialize(options));
  return communicator;
}

NcclCommunicator::NcclCommunicator(const NcclCommunicatorOptions& options)
    : rank_(options.rank),
      size_(options.size),
      device_(options.device),
      timeout_(options.timeout) {}

absl::Status NcclCommunicator::Initialize(const NcclCommunicatorOptions& options) {
  DisableNvlsUnlessSet();
  ScopedDevice scoped(device_);
  FF_RETURN_IF_ERROR(scoped.status());
  if (options.stream != nullptr) {
    stream_ = options.stream;
  } else {
    FF_RETURN_IF_ERROR(CudaStatus(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                                  "cudaStreamCreateWithFlags"));
    owns_stream_ = true;
  }
  FF_RETURN_IF_ERROR(CudaStatus(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming),
                                "cudaEventCreateWithFlags"));
  FF_RETURN_IF_ERROR(CudaStatus(cudaMalloc(reinterpret_cast<void**>(&barrier_word_), sizeof(float)),
                                "cudaMalloc"));
  FF_RETURN_IF_ERROR(CudaStatus(cudaMemset(barrier_word_, 0, sizeof(float)), "cudaMemset"));

  ncclUniqueId id;
  std::memcpy(id.internal, options.unique_id.data(), sizeof(id.internal));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // so that a missing peer can be timed out instead of hanging here
  const Clock::time_point deadline = Clock::now() + timeout_;
  const ncclResult_t result = ncclCommInitRankConfig(&comm_, size_, id, rank_, &config);
  if (result != ncclSuccess && result != ncclInProgress) {
    return Fail(NcclStatus(result, "ncclCommInitRankConfig", comm_));
  }
  absl::Status joined = WaitWhileInProgress("ncclCommInitRankConfig", deadline);
  if (absl::IsDeadlineExceeded(joined)) {
    return absl::DeadlineExceededError(absl::StrFormat(
        "NCCL rendezvous of rank %d of %d on device %d did not complete within %d ms (a peer "
        "never joined?)",
        rank_, size_, device_, timeout_.count()));
  }
  return joined;
}

NcclCommunicator::~NcclCommunicator() {
  ScopedDevice scoped(device_);
  if (comm_ != nullptr) {
    // Finalize flushes outstanding work and frees network resources; it may need the peers, so it
    // is bounded like everything else and falls back to an abort.
    bool clean = Synchronize().ok() && comm_ != nullptr;
    if (clean) {
      const ncclResult_t result = ncclCommFinalize(comm_);
      clean = (result == ncclSuccess || result == ncclInProgress) &&
              WaitWhileInProgress("ncclCommFinalize", Clock::now() + timeout_).ok();
    }
    if (comm_ != nullptr) {
      if (clean) {
        ncclCommDestroy(comm_);
      } else {
        ncclCommAbort(comm_);
      }
      comm_ = nullptr;
    }
  }
  if (barrier_word_ != nullptr) cudaFree(barrier_word_);
  if (done_ != nullptr) cudaEventDestroy(done_);
  if (owns_stream_ && stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::Status NcclCommunicator::Fail(absl::Status error) {
  if (comm_ != nullptr) {
    ncclCommAbort(comm_);  // also stops any NCCL kernel still waiting for a peer
    comm_ = nullptr;
  }
  if (broken_.ok()) broken_ = error;
  return error;
}

absl::Status NcclCommunicator::WaitWhileInProgress(const char* call, Clock::time_point deadline) {
  Backoff backoff;
  while (true) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t result = ncclCommGetAsyncError(comm_, &state);
    if (result != ncclSuccess) return Fail(NcclStatus(result, "ncclCommGetAsyncError", comm_));
    if (state == ncclSuccess) return absl::OkStatus();
    if (state != ncclInProgress) return Fail(NcclStatus(state, call, comm_));
    if (Clock::now() > deadline) {
      return Fail(absl::DeadlineExceededError(absl::StrFormat(
          "%s on rank %d did not complete within %d ms", call, rank_, timeout_.count())));
    }
    backoff.Pause();
  }
}

template <typename Enqueue>
absl::Status NcclCommunicator::Run(const char* call, Enqueue&& enqueue) {
  if (!broken_.ok()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s: communicator failed earlier: %s", call, broken_.message()));
  }
  ScopedDevice scoped(device_);
  FF_RETURN_IF_ERROR(scoped.status());
  const Clock::time_point deadline = Clock::now() + timeout_;
  const ncclResult_t result = enqueue();
  if (result == ncclSuccess) return absl::OkStatus();
  if (result != ncclInProgress) return Fail(NcclStatus(result, call, comm_));
  return WaitWhileInProgress(call, deadline);
}

absl::Status NcclCommunicator::AllReduceSum(float* data, int64_t count) {
  FF_RETURN_IF_ERROR(CheckBytes(count, data, data, "AllReduceSum"));
  if (count == 0) return absl::OkStatus();
  return Run("ncclAllReduce", [&] {
    return ncclAllReduce(data, data, static_cast<size_t>(count), ncclFloat32, ncclSum, comm_,
                         stream_);
  });
}

absl::Status NcclCommunicator::AllReduceSumBFloat16(void* data, int64_t count) {
  FF_RETURN_IF_ERROR(CheckBytes(count, data, data, "AllReduceSumBFloat16"));
  if (count == 0) return absl::OkStatus();
  return Run("ncclAllReduce (bf16)", [&] {
    return ncclAllReduce(data, data, static_cast<size_t>(count), ncclBfloat16, ncclSum, comm_,
                         stream_);
  });
}

absl::Status NcclCommunicator::AllGather(const void* input, int64_t bytes_per_rank, void* output) {
  FF_RETURN_IF_ERROR(CheckBytes(bytes_per_rank, input, output, "AllGather"));
  if (bytes_per_rank == 0) return absl::OkStatus();
  return Run("ncclAllGather", [&] {
    return ncclAllGather(input, output, static_cast<size_t>(bytes_per_rank), ncclUint8, comm_,
                         stream_);
  });
}

absl::Status NcclCommunicator::AllToAll(const void* input, int64_t bytes_per_slot, void* output) {
  FF_RETURN_IF_ERROR(CheckBytes(bytes_per_slot, input, output, "AllToAll"));
  if (bytes_per_slot == 0) return absl::OkStatus();
  const auto* in = static_cast<const std::byte*>(input);
  auto* out = static_cast<std::byte*>(output);
  const auto bytes = static_cast<size_t>(bytes_per_slot);
  cudaError_t copy_error = cudaSuccess;
  const absl::Status status = Run("AllToAll (ncclSend/ncclRecv group)", [&] {
    // Our own slot is a local copy; the peers' slots go through one fused group of sends and
    // receives, which NCCL progresses concurrently (so no ordering deadlock between peers).
    copy_error = cudaMemcpyAsync(out + rank_ * bytes, in + rank_ * bytes, bytes,
                                 cudaMemcpyDeviceToDevice, stream_);
    if (copy_error != cudaSuccess) return ncclUnhandledCudaError;
    ncclResult_t first_error = ncclGroupStart();
    if (first_error != ncclSuccess) return first_error;
    for (int peer = 0; peer < size_; ++peer) {
      if (peer == rank_) continue;
      for (ncclResult_t result :
           {ncclSend(in + peer * bytes, bytes, ncclUint8, peer, comm_, stream_),
            ncclRecv(out + peer * bytes, bytes, ncclUint8, peer, comm_, stream_)}) {
        if (first_error == ncclSuccess && result != ncclSuccess && result != ncclInProgress) {
          first_error = result;
        }
      }
    }
    const ncclResult_t end = ncclGroupEnd();  // always close the group, even after an error
    return first_error != ncclSuccess ? first_error : end;
  });
  if (copy_error != cudaSuccess) return CudaStatus(copy_error, "cudaMemcpyAsync (AllToAll)");
  return status;
}

absl::Status NcclCommunicator::Broadcast(void* data, int64_t bytes, int root) {
  FF_RETURN_IF_ERROR(CheckBytes(bytes, data, data, "Broadcast"));
  if (root < 0 || root >= size_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Broadcast: root %d is outside a group of %d", root, size_));
  }
  if (bytes == 0) return absl::OkStatus();
  return Run("ncclBroadcast", [&] {
    return ncclBroadcast(data, data, static_cast<size_t>(bytes), ncclUint8, root, comm_, stream_);
  });
}

absl::Status NcclCommunicator::Barrier() {
  FF_RETURN_IF_ERROR(AllReduceSum(barrier_word_, 1));
  return Synchronize();
}

absl::Status NcclCommunicator::Synchronize() {
  if (!broken_.ok()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("Synchronize: communicator failed earlier: %s", broken_.message()));
  }
  ScopedDevice scoped(device_);
  FF_RETURN_IF_ERROR(scoped.status());
  FF_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(done_, stream_), "cudaEventRecord"));
  const Clock::time_point deadline = Clock::now() + timeout_;
  Backoff backoff;
  while (true) {
    const cudaError_t query = cudaEventQuery(done_);
    if (query != cudaErrorNotReady) {
      if (query != cudaSuccess) return Fail(CudaStatus(query, "cudaEventQuery"));
      break;
    }
    ncclResult_t state = ncclSuccess;
    const ncclResult_t result = ncclCommGetAsyncError(comm_, &state);
    if (result != ncclSuccess) return Fail(NcclStatus(result, "ncclCommGetAsyncError", comm_));
    if (state != ncclSuccess && state != ncclInProgress) {
      return Fail(NcclStatus(state, "NCCL collective", comm_));
    }
    if (Clock::now() > deadline) {
      return Fail(absl::DeadlineExceededError(absl::StrFormat(
          "collectives on rank %d (device %d) did not finish within %d ms (a peer missing?); "
          "communicator aborted",
          rank_, device_, timeout_.count())));
    }
    backoff.Pause();
  }
  ncclResult_t state = ncclSuccess;
  FF_RETURN_IF_ERROR(NcclStatus(ncclCommGetAsyncError(comm_, &state), "ncclCommGetAsyncError"));
  if (state != ncclSuccess && state != ncclInProgress) {
    return Fail(NcclStatus(state, "NCCL collective", comm_));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::collectives
