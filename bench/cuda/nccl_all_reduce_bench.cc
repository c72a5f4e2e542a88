// All-reduce across two GPUs of this host: NCCL FP32 (NcclCommunicator::AllReduceSum) against the
// INT8-compressed all-reduce (DeviceCompressedAllReducer, block 128), 64 KiB ... 256 MiB of float
// per rank. Two ranks run as threads of this process, one GPU each, for all benchmarks. Each
// iteration: both ranks meet at a Barrier, then issue `calls` back-to-back in-place all-reduces and
// synchronize; the time per call is the slower rank's wall time / calls. algbw = bytes / time and
// busbw = algbw * 2 (n - 1) / n as in nccl-tests, both on the FP32 bytes (for the compressed path
// an FP32-equivalent bandwidth). Set NCCL_NVLS_ENABLE=0 on multi-GPU hosts (scripts/gpu-run.sh).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cuda/int8_block_all_reduce.h"
#include "worker/collectives/device_compressed_all_reducer.h"
#include "worker/collectives/nccl_communicator.h"

namespace {

using flatfleet::collectives::CreateNcclUniqueId;
using flatfleet::collectives::DeviceCompressedAllReducer;
using flatfleet::collectives::NcclCommunicator;

constexpr int kRanks = 2;
constexpr int64_t kMaxBytes = int64_t{256} << 20;

// The last two split the compressed call into its parts, to see where its time goes: the two
// exchanges of INT8 slots alone (no kernels), and the three kernels alone (no communication).
// kNcclBf16 all-reduces the same element count as bf16 (half the bytes; what the GPU model's
// tensor-parallel partial sums send); its bandwidth counters are FP32-equivalent like INT8's.
enum class Mode {
  kNcclFp32 = 0,
  kCompressedInt8 = 1,
  kInt8ExchangeOnly = 2,
  kInt8KernelsOnly = 3,
  kNcclBf16 = 4,
};
const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kNcclFp32:
      return "nccl_fp32";
    case Mode::kCompressedInt8:
      return "int8_compressed";
    case Mode::kInt8ExchangeOnly:
      return "int8_exchange_only";
    case Mode::kInt8KernelsOnly:
      return "int8_kernels_only";
    case Mode::kNcclBf16:
      return "nccl_bf16";
  }
  return "";
}

// One rank's device buffers: the data, its pristine copy, and two sets of INT8 slots for the
// breakdown modes.
struct RankBuffers {
  float* data = nullptr;
  float* pristine = nullptr;
  uint8_t* slots = nullptr;
  uint8_t* received = nullptr;
};

struct Command {
  Mode mode = Mode::kNcclFp32;
  int64_t count = 0;
  int calls = 0;
};

// Two ranks as persistent threads, each with its communicator, compressed reducer and a device
// buffer of random floats (plus a pristine copy that resets it before every timed run, so values
// cannot grow out of range over repeated in-place sums).
class TwoGpuGroup {
 public:
  static TwoGpuGroup* Get() {
    static TwoGpuGroup* group = [] {
      int devices = 0;
      if (cudaGetDeviceCount(&devices) != cudaSuccess || devices < kRanks)
        return static_cast<TwoGpuGroup*>(nullptr);
      static TwoGpuGroup instance;
      return instance.ok() ? &instance : nullptr;
    }();
    return group;
  }

  // Runs `command` on both ranks; returns the slower rank's seconds, or a negative value on error.
  double Run(const Command& command) {
    std::unique_lock lock(mutex_);
    command_ = command;
    seconds_.assign(kRanks, 0.0);
    done_ = 0;
    ++generation_;
    changed_.notify_all();
    changed_.wait(lock, [&] { return done_ == kRanks; });
    return *std::min_element(seconds_.begin(), seconds_.end()) < 0
               ? -1.0
               : *std::max_element(seconds_.begin(), seconds_.end());
  }

  const std::string& error() const { return error_; }

 private:
  TwoGpuGroup() {
    const auto id = CreateNcclUniqueId();
    if (!id.ok()) {
      error_ = std::string(id.status().message());
      return;
    }
    ready_.assign(kRanks, 0);
    for (int rank = 0; rank < kRanks; ++rank) {
      threads_.emplace_back([this, rank, id = *id] { Serve(rank, id); });
    }
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return std::count(ready_.begin(), ready_.end(), 0) == 0; });
  }

  ~TwoGpuGroup() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
      changed_.notify_all();
    }
    for (std::thread& thread : threads_) thread.join();
  }

  bool ok() const { return std::count(ready_.begin(), ready_.end(), 1) == kRanks; }

  void Serve(int rank, const std::string& id) {
    cudaSetDevice(rank);
    auto communicator =
        NcclCommunicator::Create({.rank = rank, .size = kRanks, .unique_id = id, .device = rank});
    std::unique_ptr<DeviceCompressedAllReducer> reducer;
    RankBuffers buffers;
    // Slots of the largest size: n chunks of whole blocks plus scales and padding.
    const int64_t slot_bytes =
        flatfleet::cuda::MakeInt8ChunkLayout(kMaxBytes / sizeof(float), 128, kRanks).slot_bytes;
    bool ok = communicator.ok();
    if (ok) {
      auto created = DeviceCompressedAllReducer::Create(**communicator, {.block_size = 128});
      ok = created.ok();
      if (ok) reducer = *std::move(created);
    }
    if (ok)
      ok = cudaMalloc(&buffers.data, kMaxBytes) == cudaSuccess &&
           cudaMalloc(&buffers.pristine, kMaxBytes) == cudaSuccess &&
           cudaMalloc(&buffers.slots, kRanks * slot_bytes) == cudaSuccess &&
           cudaMalloc(&buffers.received, kRanks * slot_bytes) == cudaSuccess &&
           cudaMemset(buffers.slots, 0, kRanks * slot_bytes) == cudaSuccess &&
           cudaMemset(buffers.received, 0, kRanks * slot_bytes) == cudaSuccess;
    if (ok) {
      // Never-zero pseudo-random floats in [-1, 1) (xorshift: fast enough for 64M values).
      std::vector<float> host(kMaxBytes / sizeof(float));
      uint32_t state = 0x9e3779b9u * (rank + 1);
      for (float& v : host) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        v = static_cast<float>(static_cast<int32_t>(state | 1)) * 0x1p-31f;
      }
      ok = cudaMemcpy(buffers.pristine, host.data(), kMaxBytes, cudaMemcpyHostToDevice) ==
           cudaSuccess;
    }
    {
      std::lock_guard lock(mutex_);
      ready_[rank] = ok ? 1 : -1;
      if (!ok && error_.empty()) {
        error_ = communicator.ok() ? "setup failed" : std::string(communicator.status().message());
      }
      changed_.notify_all();
    }
    int64_t seen = 0;
    while (ok) {
      Command command;
      {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) break;
        seen = generation_;
        command = command_;
      }
      const double seconds = TimeCalls(**communicator, *reducer, command, buffers);
      std::lock_guard lock(mutex_);
      seconds_[rank] = seconds;
      ++done_;
      changed_.notify_all();
    }
    reducer.reset();
    if (communicator.ok()) communicator->reset();
    for (void* buffer : {static_cast<void*>(buffers.data), static_cast<void*>(buffers.pristine),
                         static_cast<void*>(buffers.slots), static_cast<void*>(buffers.received)}) {
      cudaFree(buffer);
    }
  }

  // One call of `mode`; false on error.
  static bool Call(NcclCommunicator& communicator, DeviceCompressedAllReducer& reducer,
                   const Command& command, const RankBuffers& buffers) {
    namespace cuda = flatfleet::cuda;
    const cuda::Int8ChunkLayout layout = cuda::MakeInt8ChunkLayout(command.count, 128, kRanks);
    const int rank = communicator.rank();
    switch (command.mode) {
      case Mode::kNcclFp32:
        return communicator.AllReduceSum(buffers.data, command.count).ok();
      case Mode::kNcclBf16:  // the float data's first 2 * count bytes, read as bf16
        return communicator.AllReduceSumBFloat16(buffers.data, command.count).ok();
      case Mode::kCompressedInt8:
        return reducer.AllReduceSum(buffers.data, command.count).ok();
      case Mode::kInt8ExchangeOnly:
        return communicator.AllToAll(buffers.slots, layout.slot_bytes, buffers.received).ok() &&
               communicator
                   .AllGather(buffers.slots + rank * layout.slot_bytes, layout.slot_bytes,
                              buffers.slots)
                   .ok();
      case Mode::kInt8KernelsOnly: {
        // The received slots hold our own quantized chunks: different values, the same work.
        const cudaStream_t stream = communicator.stream();
        return cuda::LaunchQuantizeIntoSlots(buffers.data, layout, buffers.slots, nullptr,
                                             stream) == cudaSuccess &&
               cuda::LaunchReduceAndRequantize(buffers.slots, layout, rank,
                                               buffers.received + rank * layout.slot_bytes,
                                               stream) == cudaSuccess &&
               cuda::LaunchDequantizeSlots(buffers.received, layout, buffers.data, nullptr,
                                           stream) == cudaSuccess;
      }
    }
    return false;
  }

  static double TimeCalls(NcclCommunicator& communicator, DeviceCompressedAllReducer& reducer,
                          const Command& command, const RankBuffers& buffers) {
    if (cudaMemcpyAsync(buffers.data, buffers.pristine, command.count * sizeof(float),
                        cudaMemcpyDeviceToDevice, communicator.stream()) != cudaSuccess ||
        !communicator.Barrier().ok()) {
      return -1.0;
    }
    const auto start = std::chrono::steady_clock::now();
    for (int call = 0; call < command.calls; ++call) {
      if (!Call(communicator, reducer, command, buffers)) return -1.0;
    }
    if (!communicator.Synchronize().ok()) return -1.0;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // Also checks the compressed calls for non-finite values (the breakdown modes skip it).
    if (command.mode == Mode::kCompressedInt8 && !reducer.Synchronize().ok()) return -1.0;
    return seconds;
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::thread> threads_;
  std::vector<int> ready_;  // per rank: 0 starting, 1 ready, -1 failed
  std::string error_;
  Command command_;
  int64_t generation_ = 0;
  int done_ = 0;
  std::vector<double> seconds_;
  bool stop_ = false;
};

void BM_AllReduce(benchmark::State& state) {
  const auto mode = static_cast<Mode>(state.range(0));
  const int64_t bytes = state.range(1);
  TwoGpuGroup* group = TwoGpuGroup::Get();
  if (group == nullptr) {
    state.SkipWithError("needs 2 GPUs and a working NCCL group");
    return;
  }
  // About 64 MiB per timed run, 4 to 64 calls: long enough to hide the start-up skew.
  const Command command{mode, bytes / int64_t{sizeof(float)},
                        static_cast<int>(std::clamp<int64_t>((int64_t{64} << 20) / bytes, 4, 64))};
  double total_seconds = 0.0;
  int64_t total_calls = 0;
  for (auto _ : state) {
    const double seconds = group->Run(command);
    if (seconds < 0) {
      state.SkipWithError("collective failed");
      return;
    }
    state.SetIterationTime(seconds / command.calls);
    total_seconds += seconds;
    total_calls += command.calls;
  }
  const double per_call = total_seconds / total_calls;
  const double algbw = bytes / per_call / 1e9;
  state.counters["us_per_call"] = per_call * 1e6;
  state.counters["algbw_GBps"] = algbw;
  state.counters["busbw_GBps"] = algbw * 2.0 * (kRanks - 1) / kRanks;
  state.SetLabel(ModeName(mode));
}

void AllReduceArgs(benchmark::internal::Benchmark* benchmark) {
  for (int mode : {0, 1, 2, 3, 4}) {
    for (int64_t bytes = int64_t{16} << 10; bytes <= kMaxBytes; bytes *= 4) {
      benchmark->Args({mode, bytes});
    }
  }
}

// Fixed iterations: each one is a timed run of several calls plus an untimed barrier and reset.
BENCHMARK(BM_AllReduce)->UseManualTime()->Iterations(20)->Apply(AllReduceArgs);

}  // namespace
