#include "runtime/cuda/cuda_stream.h"

#include <utility>

#include "runtime/cuda/cuda_status.h"

namespace flatfleet::runtime::cuda {

absl::StatusOr<CudaStream> CudaStream::Create(int device) {
  FF_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  CudaStream stream;
  stream.device_ = device;
  FF_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream.stream_, cudaStreamNonBlocking));
  return stream;
}

CudaStream::~CudaStream() {
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

CudaStream::CudaStream(CudaStream&& other) noexcept { *this = std::move(other); }

CudaStream& CudaStream::operator=(CudaStream&& other) noexcept {
  if (this != &other) {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    stream_ = std::exchange(other.stream_, nullptr);
    device_ = other.device_;
  }
  return *this;
}

absl::Status CudaStream::Synchronize() const {
  FF_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

}  // namespace flatfleet::runtime::cuda
