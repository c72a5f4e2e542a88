// The collectives a tensor-parallel model on a GPU backend runs on its activations, without CUDA
// types (the model is compiled in CPU-only builds too): device pointers, and the model's stream as
// an opaque handle (its cudaStream_t). Each call is ordered after the work already enqueued on that
// stream and before the work enqueued on it afterwards; it returns once enqueued.
//
// The implementation over a DeviceCommunicator (NCCL, or the one-GPU thread group of the tests)
// is device_stream_collectives.h (CUDA builds). Errors as DeviceCommunicator's: after any error
// the group is unusable and must be rebuilt; a silent peer becomes DeadlineExceeded.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "worker/collectives/all_reduce_stats.h"

namespace flatfleet::collectives {

enum class DeviceElementType { kFloat32, kBFloat16 };

class StreamCollectives {
 public:
  virtual ~StreamCollectives() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // In place: `count` elements at `data` become their sum over ranks (identical bits on every
  // rank). `exact` asks for a lossless sum (the embedding rows, which exactly one rank
  // contributes); otherwise the implementation may use the INT8-compressed all-reduce where its
  // measured table (all_reduce_choice.h) says it is faster and compression was allowed.
  virtual absl::Status AllReduceSum(void* data, int64_t count, DeviceElementType type, bool exact,
                                    void* stream) = 0;

  // The vocabulary gather of the LM head: rank r's float32 slice [rows, widths[r]] (`local`, dense)
  // lands at columns [begins[r], begins[r] + widths[r]) of `full` [rows, full_cols] on every rank.
  // `scratch` holds GatherScratchFloats(rows, widths) floats of device memory.
  virtual absl::Status GatherColumns(const float* local, int64_t rows,
                                     std::span<const int64_t> begins,
                                     std::span<const int64_t> widths, float* scratch, float* full,
                                     int64_t full_cols, void* stream) = 0;

  // Waits (bounded by the group's timeout) for everything enqueued so far.
  virtual absl::Status Synchronize() = 0;

  // The layer all-reduces' traffic (not `exact` ones): calls and bytes; the seconds stay 0 (calls
  // only enqueue).
  virtual AllReduceStats stats() const = 0;
};

// Floats of scratch GatherColumns needs: a padded send slot and size() received slots.
inline int64_t GatherScratchFloats(int64_t rows, std::span<const int64_t> widths) {
  int64_t slot = 0;
  for (int64_t width : widths) slot = width > slot ? width : slot;
  return rows * slot * (static_cast<int64_t>(widths.size()) + 1);
}

}  // namespace flatfleet::collectives
