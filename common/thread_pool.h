// A fixed pool of worker threads with a blocking ParallelFor, used by the CPU kernels.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace flatfleet {

class ThreadPool {
 public:
  // num_threads <= 0 means one per hardware thread.
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) over disjoint chunks covering [0, n), the calling thread included;
  // returns when all chunks are done. Chunks are at least `min_chunk` long. A ParallelFor called
  // from inside fn (on any pool) runs inline as fn(0, n) on that thread, so kernels that
  // parallelise themselves can call each other.
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                   int64_t min_chunk = 1);

  // The process-wide pool (sized by FLATFLEET_THREADS or the hardware).
  static ThreadPool& Default();

 private:
  void WorkerLoop(int index);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable work_done_;
  std::mutex call_mutex_;  // one ParallelFor at a time
  const std::function<void(int64_t, int64_t)>* task_ = nullptr;
  int64_t task_n_ = 0;
  int64_t task_chunk_ = 0;
  int64_t next_chunk_ = 0;
  int64_t num_chunks_ = 0;
  int64_t chunks_done_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
};

}  // namespace flatfleet
