// Helpers for the multi-GPU collective tests: device counts, a group of NCCL ranks as threads of
// this process (one GPU and one communicator each), and random activations.
#pragma once

#include <cuda_runtime.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "tests/gpu/gpu_test_util.h"
#include "worker/collectives/nccl_communicator.h"

namespace flatfleet::collectives::testing {

inline int GpuCount() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

// A broken driver fails the test (as FF_SKIP_WITHOUT_GPU does) instead of reading as "0 GPUs".
#define FF_SKIP_WITH_FEWER_GPUS(n)                                                                 \
  do {                                                                                             \
    const ::flatfleet::cuda::testing::GpuProbe ff_probe_ = ::flatfleet::cuda::testing::ProbeGpu(); \
    if (ff_probe_.broken) FAIL() << "GPU unusable: " << ff_probe_.message;                         \
    const int ff_gpus_ = ::flatfleet::collectives::testing::GpuCount();                            \
    if (ff_gpus_ < (n)) GTEST_SKIP() << "needs " << (n) << " GPUs, found " << ff_gpus_;            \
  } while (false)

// Creates `size` NcclCommunicators on devices 0..size-1, each from its own thread, runs
// body(communicator) on those threads, then destroys them there. Creation failures fail the test.
inline void RunNcclRanks(int size, const std::function<void(NcclCommunicator&)>& body,
                         std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  const absl::StatusOr<std::string> id = CreateNcclUniqueId();
  ASSERT_TRUE(id.ok()) << id.status();
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank) {
    threads.emplace_back([&, rank] {
      ASSERT_EQ(cudaSetDevice(rank), cudaSuccess);
      auto communicator = NcclCommunicator::Create(
          {.rank = rank, .size = size, .unique_id = *id, .device = rank, .timeout = timeout});
      ASSERT_TRUE(communicator.ok()) << "rank " << rank << ": " << communicator.status();
      body(**communicator);
    });
  }
  for (std::thread& thread : threads) thread.join();
}

inline uint32_t FreshSeed() {
  const uint32_t seed = std::random_device{}();
  std::printf("random seed %u\n", seed);
  return seed;
}

// Never-zero values whose magnitude varies from block to block by up to 10^±3.
inline std::vector<float> RandomActivations(int64_t count, int block_size, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> exponent(-3.0f, 3.0f);
  std::vector<float> values(count);
  float magnitude = 1.0f;
  for (int64_t i = 0; i < count; ++i) {
    if (i % block_size == 0) magnitude = std::pow(10.0f, exponent(rng));
    float v = normal(rng);
    if (v == 0.0f) v = 0.5f;
    values[i] = v * magnitude;
  }
  return values;
}

}  // namespace flatfleet::collectives::testing
