#include "common/thread_pool.h"

#include <algorithm>
#include <cstdlib>

namespace flatfleet {
namespace {

// Set while this thread runs a ParallelFor chunk (as a worker or as the calling thread): a nested
// ParallelFor then runs inline instead of waiting for the pool it is part of.
thread_local bool inside_parallel_for = false;

// Marks the current thread as running pool work for its lifetime.
class InsideParallelFor {
 public:
  InsideParallelFor() : previous_(inside_parallel_for) { inside_parallel_for = true; }
  ~InsideParallelFor() { inside_parallel_for = previous_; }

 private:
  bool previous_;
};

}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = std::max(1u, std::thread::hardware_concurrency());
  for (int i = 0; i + 1 < num_threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& worker : workers_) worker.join();
}

ThreadPool& ThreadPool::Default() {
  static ThreadPool* pool = [] {
    int threads = 0;
    if (const char* env = std::getenv("FLATFLEET_THREADS")) threads = std::atoi(env);
    return new ThreadPool(threads);
  }();
  return *pool;
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                             int64_t min_chunk) {
  if (n <= 0) return;
  min_chunk = std::max<int64_t>(1, min_chunk);
  // A few chunks per thread balance uneven work without much scheduling cost.
  int64_t chunk = std::max(min_chunk, (n + 4 * num_threads() - 1) / (4 * num_threads()));
  int64_t chunks = (n + chunk - 1) / chunk;
  if (chunks <= 1 || workers_.empty() || inside_parallel_for) {
    fn(0, n);
    return;
  }
  InsideParallelFor inside;
  std::lock_guard<std::mutex> call_lock(call_mutex_);
  std::unique_lock<std::mutex> lock(mutex_);
  task_ = &fn;
  task_n_ = n;
  task_chunk_ = chunk;
  next_chunk_ = 0;
  num_chunks_ = chunks;
  chunks_done_ = 0;
  ++generation_;
  work_ready_.notify_all();
  // The caller works too.
  while (next_chunk_ < num_chunks_) {
    int64_t c = next_chunk_++;
    lock.unlock();
    fn(c * chunk, std::min(n, (c + 1) * chunk));
    lock.lock();
    ++chunks_done_;
  }
  work_done_.wait(lock, [&] { return chunks_done_ == num_chunks_; });
  task_ = nullptr;
}

void ThreadPool::WorkerLoop(int /*index*/) {
  uint64_t seen_generation = 0;
  InsideParallelFor inside;
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    work_ready_.wait(lock, [&] { return stopping_ || generation_ != seen_generation; });
    if (stopping_) return;
    seen_generation = generation_;
    while (task_ != nullptr && next_chunk_ < num_chunks_) {
      int64_t c = next_chunk_++;
      const auto* fn = task_;
      int64_t begin = c * task_chunk_;
      int64_t end = std::min(task_n_, (c + 1) * task_chunk_);
      lock.unlock();
      (*fn)(begin, end);
      lock.lock();
      if (++chunks_done_ == num_chunks_) work_done_.notify_all();
    }
  }
}

}  // namespace flatfleet
