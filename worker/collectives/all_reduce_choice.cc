#include "worker/collectives/all_reduce_choice.h"

#include <array>

namespace flatfleet::collectives {

std::span<const AllReduceThreshold> MeasuredDeviceAllReduceThresholds() {
  static constexpr std::array<AllReduceThreshold, 2> kTable = {{
      {2, 0, AllReduceAlgorithm::kPlain},
      {2, int64_t{256} << 20, AllReduceAlgorithm::kInt8Compressed},
  }};
  return kTable;
}

AllReduceAlgorithm ChooseDeviceAllReduce(int64_t fp32_bytes, int ranks, bool compression_allowed,
                                         std::span<const AllReduceThreshold> table) {
  if (!compression_allowed) return AllReduceAlgorithm::kPlain;
  AllReduceAlgorithm chosen = AllReduceAlgorithm::kPlain;
  int64_t best_start = -1;
  // The row with the largest start not above the message, among this group size's rows.
  for (const AllReduceThreshold& row : table) {
    if (row.ranks != ranks || row.min_fp32_bytes > fp32_bytes) continue;
    if (row.min_fp32_bytes > best_start) {
      best_start = row.min_fp32_bytes;
      chosen = row.algorithm;
    }
  }
  return chosen;
}

}  // namespace flatfleet::collectives
