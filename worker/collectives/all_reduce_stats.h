// Running totals of one rank's all-reduce traffic, for metrics and the compression trade-off.
#pragma once

#include <cstdint>

namespace flatfleet::collectives {

struct AllReduceStats {
  int64_t calls = 0;
  // Bytes this rank would send in a ring FP32 all-reduce (reduce-scatter + all-gather) of the same
  // data: 2 * (size - 1) / size * elements * 4.
  int64_t raw_bytes = 0;
  // Bytes this rank actually sent to peers (INT8 codes, float scales and chunk padding when
  // compressed; equal to raw_bytes when not).
  int64_t wire_bytes = 0;
  double seconds_total = 0.0;          // wall time inside AllReduceSum
  double seconds_communicating = 0.0;  // of which waiting on the communicator

  double compression_ratio() const {
    return wire_bytes == 0 ? 1.0 : static_cast<double>(raw_bytes) / wire_bytes;
  }
};

}  // namespace flatfleet::collectives
