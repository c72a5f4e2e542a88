#include "worker/collectives/device_compressed_all_reducer.h"

#include <array>
#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/collectives/nccl_status.h"

namespace flatfleet::collectives {
namespace {

constexpr int kMaxRanks = 16;

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceCompressedAllReducer>> DeviceCompressedAllReducer::Create(
    DeviceCommunicator& communicator, DeviceCompressedAllReduceOptions options) {
  if (options.block_size <= 0) return absl::InvalidArgumentError("block_size must be positive");
  if (communicator.size() > kMaxRanks) {
    return absl::InvalidArgumentError(
        absl::StrFormat("the compressed all-reduce supports at most %d ranks, got %d", kMaxRanks,
                        communicator.size()));
  }
  std::unique_ptr<DeviceCompressedAllReducer> reducer(
      new DeviceCompressedAllReducer(communicator, options));
  int previous = 0;
  FF_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&previous), "cudaGetDevice"));
  FF_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(communicator.device()), "cudaSetDevice"));
  const cudaStream_t stream = communicator.stream();
  absl::Status status = CudaStatus(cudaMallocAsync(reinterpret_cast<void**>(&reducer->status_),
                                                   cuda::kStatusWords * sizeof(int32_t), stream),
                                   "cudaMallocAsync");
  if (status.ok()) {
    status = CudaStatus(
        cudaMemsetAsync(reducer->status_, 0, cuda::kStatusWords * sizeof(int32_t), stream),
        "cudaMemsetAsync");
  }
  cudaSetDevice(previous);
  FF_RETURN_IF_ERROR(status);
  return reducer;
}

DeviceCompressedAllReducer::DeviceCompressedAllReducer(DeviceCommunicator& communicator,
                                                       DeviceCompressedAllReduceOptions options)
    : communicator_(communicator), options_(options) {}

DeviceCompressedAllReducer::~DeviceCompressedAllReducer() {
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess) previous = -1;
  cudaSetDevice(communicator_.device());
  for (void* buffer : {static_cast<void*>(outgoing_), static_cast<void*>(incoming_),
                       static_cast<void*>(status_)}) {
    if (buffer != nullptr) cudaFreeAsync(buffer, communicator_.stream());
  }
  if (previous >= 0) cudaSetDevice(previous);
}

absl::Status DeviceCompressedAllReducer::Reserve(int64_t bytes) {
  if (bytes <= capacity_) return absl::OkStatus();
  const cudaStream_t stream = communicator_.stream();
  for (uint8_t** buffer : {&outgoing_, &incoming_}) {
    if (*buffer != nullptr) {
      FF_RETURN_IF_ERROR(CudaStatus(cudaFreeAsync(*buffer, stream), "cudaFreeAsync"));
      *buffer = nullptr;
    }
  }
  capacity_ = 0;
  for (uint8_t** buffer : {&outgoing_, &incoming_}) {
    FF_RETURN_IF_ERROR(CudaStatus(cudaMallocAsync(reinterpret_cast<void**>(buffer), bytes, stream),
                                  "cudaMallocAsync"));
  }
  capacity_ = bytes;
  return absl::OkStatus();
}

absl::Status DeviceCompressedAllReducer::AllReduceSum(float* data, int64_t count) {
  if (count < 0) return absl::InvalidArgumentError("AllReduceSum: negative count");
  if (count > 0 && data == nullptr) {
    return absl::InvalidArgumentError("AllReduceSum: null device pointer");
  }
  const int size = communicator_.size();
  const int64_t fp32_bytes = count * static_cast<int64_t>(sizeof(float));
  if (!options_.enabled) {
    FF_RETURN_IF_ERROR(communicator_.AllReduceSum(data, count));
    stats_.calls++;
    stats_.raw_bytes += 2 * (size - 1) * fp32_bytes / size;
    stats_.wire_bytes += 2 * (size - 1) * fp32_bytes / size;
    return absl::OkStatus();
  }
  const cuda::Int8ChunkLayout layout = cuda::MakeInt8ChunkLayout(count, options_.block_size, size);
  last_layout_ = layout;
  if (count == 0) return absl::OkStatus();

  int previous = 0;
  FF_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&previous), "cudaGetDevice"));
  if (previous != communicator_.device()) {
    FF_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(communicator_.device()), "cudaSetDevice"));
  }
  const absl::Status status = [&]() -> absl::Status {
    const int64_t slots_bytes = size * layout.slot_bytes;
    FF_RETURN_IF_ERROR(Reserve(slots_bytes));
    const cudaStream_t stream = communicator_.stream();
    const int rank = communicator_.rank();
    uint8_t* reduced_slot = outgoing_ + rank * layout.slot_bytes;
    FF_RETURN_IF_ERROR(CudaStatus(
        cuda::LaunchQuantizeIntoSlots(data, layout, outgoing_, status_, stream), "quantize"));
    FF_RETURN_IF_ERROR(communicator_.AllToAll(outgoing_, layout.slot_bytes, incoming_));
    FF_RETURN_IF_ERROR(
        CudaStatus(cuda::LaunchReduceAndRequantize(incoming_, layout, rank, reduced_slot, stream),
                   "reduce and requantize"));
    // In place: our reduced chunk already sits in its slot of the gathered buffer.
    FF_RETURN_IF_ERROR(communicator_.AllGather(reduced_slot, layout.slot_bytes, outgoing_));
    FF_RETURN_IF_ERROR(CudaStatus(
        cuda::LaunchDequantizeSlots(outgoing_, layout, data, status_, stream), "dequantize"));
    return absl::OkStatus();
  }();
  if (previous != communicator_.device()) cudaSetDevice(previous);
  FF_RETURN_IF_ERROR(status);
  stats_.calls++;
  stats_.raw_bytes += 2 * (size - 1) * fp32_bytes / size;
  stats_.wire_bytes += 2 * (size - 1) * layout.slot_bytes;
  return absl::OkStatus();
}

absl::Status DeviceCompressedAllReducer::Synchronize() {
  FF_RETURN_IF_ERROR(communicator_.Synchronize());
  // The stream is drained, so this small copy cannot wait on a peer.
  std::array<int32_t, cuda::kStatusWords> raised{};
  int previous = 0;
  FF_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&previous), "cudaGetDevice"));
  FF_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(communicator_.device()), "cudaSetDevice"));
  absl::Status copied = CudaStatus(cudaMemcpyAsync(raised.data(), status_, sizeof(raised),
                                                   cudaMemcpyDeviceToHost, communicator_.stream()),
                                   "cudaMemcpyAsync (status words)");
  if (copied.ok()) {
    copied = CudaStatus(cudaStreamSynchronize(communicator_.stream()), "cudaStreamSynchronize");
  }
  if (copied.ok() && (raised[0] != 0 || raised[1] != 0)) {
    copied = CudaStatus(cudaMemsetAsync(status_, 0, sizeof(raised), communicator_.stream()),
                        "cudaMemsetAsync (status words)");
  }
  cudaSetDevice(previous);
  FF_RETURN_IF_ERROR(copied);
  if (raised[cuda::kStatusNonFiniteInput] != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "compressed all-reduce: non-finite value in the input of rank %d", communicator_.rank()));
  }
  if (raised[cuda::kStatusNonFiniteReduced] != 0) {
    return absl::InvalidArgumentError(
        "compressed all-reduce: non-finite reduced value (another rank's input, or the sum "
        "overflowed)");
  }
  return absl::OkStatus();
}

absl::StatusOr<Int8Blocks> DeviceCompressedAllReducer::LastReduced() {
  FF_RETURN_IF_ERROR(Synchronize());
  const cuda::Int8ChunkLayout& layout = last_layout_;
  Int8Blocks reduced;
  reduced.codes.resize(layout.num_elements);
  reduced.scales.resize(layout.num_blocks);
  if (layout.num_elements == 0) return reduced;
  std::vector<uint8_t> slots(layout.num_ranks * layout.slot_bytes);
  int previous = 0;
  FF_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&previous), "cudaGetDevice"));
  FF_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(communicator_.device()), "cudaSetDevice"));
  const absl::Status copied = CudaStatus(
      cudaMemcpy(slots.data(), outgoing_, slots.size(), cudaMemcpyDeviceToHost), "cudaMemcpy");
  cudaSetDevice(previous);
  FF_RETURN_IF_ERROR(copied);
  for (int r = 0; r < layout.num_ranks; ++r) {
    const int64_t first_block = cuda::Int8ChunkBegin(layout, r);
    const int64_t end_block = cuda::Int8ChunkBegin(layout, r + 1);
    const int64_t first = first_block * layout.block_size;
    const int64_t end = std::min(end_block * layout.block_size, layout.num_elements);
    const uint8_t* slot = slots.data() + r * layout.slot_bytes;
    std::memcpy(reduced.codes.data() + first, slot, end - first);
    std::memcpy(reduced.scales.data() + first_block, slot + layout.scales_offset,
                (end_block - first_block) * sizeof(float));
  }
  return reduced;
}

}  // namespace flatfleet::collectives
