#include "common/thread_pool.h"

#include <atomic>
#include <vector>

#include "gtest/gtest.h"

namespace flatfleet {
namespace {

TEST(ThreadPoolTest, CoversEveryIndexExactlyOnce) {
  ThreadPool pool(4);
  for (int64_t n : {1, 3, 17, 1000, 12345}) {
    std::vector<std::atomic<int>> hits(n);
    pool.ParallelFor(n, [&](int64_t begin, int64_t end) {
      ASSERT_LT(begin, end);
      for (int64_t i = begin; i < end; ++i) hits[i]++;
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
  }
}

TEST(ThreadPoolTest, RespectsMinimumChunk) {
  ThreadPool pool(3);
  std::atomic<int> calls = 0;
  pool.ParallelFor(
      100,
      [&](int64_t begin, int64_t end) {
        calls++;
        EXPECT_TRUE(end - begin >= 40 || end == 100);
      },
      40);
  EXPECT_LE(calls.load(), 3);
}

TEST(ThreadPoolTest, ManyConsecutiveCallsFinish) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum = 0;
  for (int round = 0; round < 2000; ++round) {
    pool.ParallelFor(64, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) sum += i;
    });
  }
  EXPECT_EQ(sum.load(), 2000 * (63 * 64 / 2));
}

TEST(ThreadPoolTest, ANestedCallRunsInlineInsteadOfDeadlocking) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(40 * 50);
  std::atomic<int> inner_calls = 0;
  pool.ParallelFor(40, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      pool.ParallelFor(50, [&](int64_t inner_begin, int64_t inner_end) {
        inner_calls++;
        EXPECT_EQ(inner_begin, 0);  // one inline call over the whole range
        EXPECT_EQ(inner_end, 50);
        for (int64_t j = inner_begin; j < inner_end; ++j) hits[i * 50 + j]++;
      });
    }
  });
  EXPECT_EQ(inner_calls.load(), 40);
  for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i].load(), 1) << i;
  // Afterwards the pool parallelises again from this thread.
  std::atomic<int> chunks = 0;
  pool.ParallelFor(1000, [&](int64_t, int64_t) { chunks++; });
  EXPECT_GT(chunks.load(), 1);
}

}  // namespace
}  // namespace flatfleet
