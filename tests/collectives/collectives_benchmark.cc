// Times FP32 vs INT8-compressed all-reduce with ranks as threads over loopback TCP.
// Usage: collectives_benchmark [iterations]. Loopback on a shared host measures CPU cost more than
// network savings; the byte counts are what carries over to real links.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "tests/collectives/collectives_test_support.h"
#include "worker/collectives/compressed_all_reducer.h"

namespace flatfleet::collectives {
namespace {

struct Timing {
  double median_ms = 0.0;
  AllReduceStats stats;
};

Timing Measure(int size, int64_t elements, bool compressed, int iterations) {
  std::vector<Timing> per_rank(size);
  testing::RunRanksAsThreads(size, [&](Communicator& communicator) {
    std::mt19937 rng(communicator.rank() + 1);
    const std::vector<float> input = testing::RandomActivations(elements, rng);
    CompressedAllReducer reducer(communicator, {.enabled = compressed, .block_size = 128});
    std::vector<double> ms;
    for (int i = 0; i < iterations + 1; ++i) {  // the first call warms up
      std::vector<float> data = input;
      const auto start = std::chrono::steady_clock::now();
      if (!reducer.AllReduceSum(absl::MakeSpan(data)).ok()) std::abort();
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count());
    }
    ms.erase(ms.begin());
    std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
    per_rank[communicator.rank()] = {ms[ms.size() / 2], reducer.stats()};
  });
  return per_rank[0];
}

}  // namespace
}  // namespace flatfleet::collectives

int main(int argc, char** argv) {
  using flatfleet::collectives::Measure;
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 10;
  std::printf("%5s %10s %12s %12s %14s %14s\n", "ranks", "floats", "fp32 ms", "int8 ms",
              "fp32 B/rank", "int8 B/rank");
  for (int size : {2, 4}) {
    for (int64_t elements : {int64_t{1} << 14, int64_t{1} << 20}) {
      const auto plain = Measure(size, elements, false, iterations);
      const auto packed = Measure(size, elements, true, iterations);
      std::printf("%5d %10lld %12.2f %12.2f %14lld %14lld\n", size,
                  static_cast<long long>(elements), plain.median_ms, packed.median_ms,
                  static_cast<long long>(plain.stats.wire_bytes / plain.stats.calls),
                  static_cast<long long>(packed.stats.wire_bytes / packed.stats.calls));
    }
  }
  return 0;
}
