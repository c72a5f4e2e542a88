// A monotonically increasing value, such as requests served. Lock-free.
#pragma once

#include <atomic>

namespace flatfleet::metrics {

class Counter {
 public:
  // Negative and NaN increments are ignored: a counter never goes down.
  void Increment(double amount = 1.0) {
    if (!(amount >= 0.0)) return;
    value_.fetch_add(amount, std::memory_order_relaxed);
  }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

}  // namespace flatfleet::metrics
