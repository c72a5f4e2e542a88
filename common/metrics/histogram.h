// Counts observations into buckets with fixed upper bounds, such as request latencies.
// Observe() is lock-free: a binary search and two atomic adds.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"

namespace flatfleet::metrics {

struct HistogramSnapshot {
  std::vector<double> upper_bounds;         // Finite bounds, increasing; +Inf is implied.
  std::vector<uint64_t> cumulative_counts;  // upper_bounds.size() + 1 entries, the last is +Inf.
  double sum = 0.0;
  uint64_t count = 0;  // Equals cumulative_counts.back().
};

class Histogram {
 public:
  // `upper_bounds` must be finite and strictly increasing; a trailing +Inf is dropped since the
  // +Inf bucket always exists.
  static absl::StatusOr<std::vector<double>> CheckBuckets(std::vector<double> upper_bounds);

  // `upper_bounds` must have passed CheckBuckets.
  explicit Histogram(std::vector<double> upper_bounds);

  void Observe(double value);
  HistogramSnapshot Snapshot() const;

 private:
  std::vector<double> upper_bounds_;
  // Per-bucket (not cumulative) counts; the count is derived from them so a snapshot's
  // buckets and count always agree.
  std::unique_ptr<std::atomic<uint64_t>[]> bucket_counts_;
  std::atomic<double> sum_{0.0};
};

// Bounds start, start*factor, ... (count of them), e.g. for latencies.
std::vector<double> ExponentialBuckets(double start, double factor, int count);

}  // namespace flatfleet::metrics
