#include "worker/collectives/device_stream_collectives.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/collectives/nccl_status.h"

namespace flatfleet::collectives {
namespace {

// Makes `device` current for the scope, restoring the caller's afterwards.
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

// Bytes a rank sends in a ring all-reduce of `bytes`: 2 (n - 1) / n of them.
int64_t RingBytes(int64_t bytes, int ranks) { return 2 * (ranks - 1) * bytes / ranks; }

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceStreamCollectives>> DeviceStreamCollectives::Create(
    DeviceCommunicator& communicator, DeviceStreamCollectivesOptions options) {
  std::unique_ptr<DeviceStreamCollectives> collectives(
      new DeviceStreamCollectives(communicator, options));
  ScopedDevice scoped(communicator.device());
  FF_RETURN_IF_ERROR(scoped.status());
  for (cudaEvent_t* event : {&collectives->forked_, &collectives->joined_}) {
    FF_RETURN_IF_ERROR(CudaStatus(cudaEventCreateWithFlags(event, cudaEventDisableTiming),
                                  "cudaEventCreateWithFlags"));
  }
  if (options.compression_allowed) {
    FF_ASSIGN_OR_RETURN(
        collectives->compressed_,
        DeviceCompressedAllReducer::Create(
            communicator, {.enabled = true, .block_size = options.compression_block_size}));
  }
  return collectives;
}

DeviceStreamCollectives::~DeviceStreamCollectives() {
  ScopedDevice scoped(communicator_.device());
  compressed_.reset();
  if (forked_ != nullptr) cudaEventDestroy(forked_);
  if (joined_ != nullptr) cudaEventDestroy(joined_);
}

absl::Status DeviceStreamCollectives::Fork(cudaStream_t caller) {
  if (caller == communicator_.stream()) return absl::OkStatus();
  FF_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(forked_, caller), "cudaEventRecord (fork)"));
  return CudaStatus(cudaStreamWaitEvent(communicator_.stream(), forked_, 0),
                    "cudaStreamWaitEvent (fork)");
}

absl::Status DeviceStreamCollectives::Join(cudaStream_t caller) {
  if (caller == communicator_.stream()) return absl::OkStatus();
  FF_RETURN_IF_ERROR(
      CudaStatus(cudaEventRecord(joined_, communicator_.stream()), "cudaEventRecord (join)"));
  return CudaStatus(cudaStreamWaitEvent(caller, joined_, 0), "cudaStreamWaitEvent (join)");
}

absl::Status DeviceStreamCollectives::AllReduceSum(void* data, int64_t count,
                                                   DeviceElementType type, bool exact,
                                                   void* stream) {
  if (count < 0) return absl::InvalidArgumentError("AllReduceSum: negative count");
  if (count > 0 && data == nullptr) {
    return absl::InvalidArgumentError("AllReduceSum: null device pointer");
  }
  const auto caller = static_cast<cudaStream_t>(stream);
  ScopedDevice scoped(communicator_.device());
  FF_RETURN_IF_ERROR(scoped.status());
  const int64_t fp32_bytes = count * 4;
  const AllReduceAlgorithm algorithm =
      exact || type != DeviceElementType::kFloat32 || compressed_ == nullptr
          ? AllReduceAlgorithm::kPlain
          : ChooseDeviceAllReduce(fp32_bytes, size(), options_.compression_allowed,
                                  options_.thresholds);
  FF_RETURN_IF_ERROR(Fork(caller));
  if (algorithm == AllReduceAlgorithm::kInt8Compressed) {
    const AllReduceStats before = compressed_->stats();
    FF_RETURN_IF_ERROR(compressed_->AllReduceSum(static_cast<float*>(data), count));
    compressed_pending_ = true;
    if (!exact) {
      stats_.wire_bytes += compressed_->stats().wire_bytes - before.wire_bytes;
    }
  } else if (type == DeviceElementType::kFloat32) {
    FF_RETURN_IF_ERROR(communicator_.AllReduceSum(static_cast<float*>(data), count));
    if (!exact) stats_.wire_bytes += RingBytes(fp32_bytes, size());
  } else {
    FF_RETURN_IF_ERROR(communicator_.AllReduceSumBFloat16(data, count));
    if (!exact) stats_.wire_bytes += RingBytes(count * 2, size());
  }
  if (!exact) {
    stats_.calls += 1;
    stats_.raw_bytes += RingBytes(fp32_bytes, size());
    last_algorithm_ = algorithm;
  }
  return Join(caller);
}

absl::Status DeviceStreamCollectives::GatherColumns(const float* local, int64_t rows,
                                                    std::span<const int64_t> begins,
                                                    std::span<const int64_t> widths, float* scratch,
                                                    float* full, int64_t full_cols, void* stream) {
  const int ranks = size();
  if (static_cast<int>(begins.size()) != ranks || static_cast<int>(widths.size()) != ranks) {
    return absl::InvalidArgumentError(
        absl::StrFormat("GatherColumns: %d begins and %d widths for %d ranks", begins.size(),
                        widths.size(), ranks));
  }
  for (int r = 0; r < ranks; ++r) {
    if (widths[r] < 0 || begins[r] < 0 || begins[r] + widths[r] > full_cols) {
      return absl::InvalidArgumentError(
          absl::StrFormat("GatherColumns: rank %d's columns [%d, %d) are outside [0, %d)", r,
                          begins[r], begins[r] + widths[r], full_cols));
    }
  }
  if (rows < 0) return absl::InvalidArgumentError("GatherColumns: negative rows");
  if (rows == 0) return absl::OkStatus();
  if (local == nullptr || scratch == nullptr || full == nullptr) {
    return absl::InvalidArgumentError("GatherColumns: null device pointer");
  }
  const auto caller = static_cast<cudaStream_t>(stream);
  ScopedDevice scoped(communicator_.device());
  FF_RETURN_IF_ERROR(scoped.status());
  const int64_t slot = *std::max_element(widths.begin(), widths.end());
  float* send = scratch;
  float* received = scratch + rows * slot;
  const cudaStream_t own = communicator_.stream();
  const int64_t mine = widths[rank()];
  FF_RETURN_IF_ERROR(Fork(caller));
  // Pad this rank's rows to the common slot width (the padding is sent but never read).
  if (mine > 0) {
    FF_RETURN_IF_ERROR(
        CudaStatus(cudaMemcpy2DAsync(send, slot * sizeof(float), local, mine * sizeof(float),
                                     mine * sizeof(float), rows, cudaMemcpyDeviceToDevice, own),
                   "cudaMemcpy2DAsync (logits slice)"));
  }
  FF_RETURN_IF_ERROR(communicator_.AllGather(send, rows * slot * sizeof(float), received));
  for (int r = 0; r < ranks; ++r) {
    if (widths[r] == 0) continue;
    FF_RETURN_IF_ERROR(CudaStatus(
        cudaMemcpy2DAsync(full + begins[r], full_cols * sizeof(float), received + r * rows * slot,
                          slot * sizeof(float), widths[r] * sizeof(float), rows,
                          cudaMemcpyDeviceToDevice, own),
        "cudaMemcpy2DAsync (gathered logits)"));
  }
  return Join(caller);
}

absl::Status DeviceStreamCollectives::Synchronize() {
  if (compressed_pending_) {
    compressed_pending_ = false;
    return compressed_->Synchronize();  // also reports non-finite inputs
  }
  return communicator_.Synchronize();
}

}  // namespace flatfleet::collectives
