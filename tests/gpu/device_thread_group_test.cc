// The device collectives that tensor parallelism on the GPU runs on: the rank-order sum kernel,
// the one-GPU thread group (ranks as threads sharing a device), the StreamCollectives adapter
// (fork/join onto a caller's stream, the logits gather, the measured all-reduce table), a
// single-rank NCCL communicator through that adapter, and (2 GPUs) the per-device shared-memory
// opt-in of the integer GEMM.
#include "worker/collectives/device_thread_group.h"

#include <cuda_runtime.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cuda/int8_gemm.h"
#include "kernels/cuda/rank_sum.h"
#include "tests/gpu/gpu_test_random.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/nccl_test_group.h"
#include "worker/collectives/device_stream_collectives.h"
#include "worker/collectives/nccl_communicator.h"

namespace flatfleet::collectives {
namespace {

using cuda::testing::DeviceBuffer;

std::vector<float> RandomFloats(int64_t count, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> values(count);
  for (float& v : values) v = normal(rng);
  return values;
}

// float32 additions in rank order, as the kernel specifies.
float RankOrderSum(const std::vector<std::vector<float>>& inputs, int64_t i) {
  float sum = 0.0f;
  for (const auto& input : inputs) sum += input[i];
  return sum;
}

TEST(RankSumTest, MatchesTheRankOrderSumBitExactly) {
  FF_SKIP_WITHOUT_GPU();
  const uint64_t seed = cuda::testing::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  for (int ranks : {1, 2, 3, 16}) {
    for (int64_t count : {int64_t{1}, int64_t{1000}, int64_t{4096 * 7 + 3}}) {
      for (bool bf16 : {false, true}) {
        SCOPED_TRACE(::testing::Message()
                     << ranks << " ranks, " << count << (bf16 ? " bf16" : " f32"));
        std::vector<std::vector<float>> inputs;
        std::vector<std::unique_ptr<DeviceBuffer<uint8_t>>> buffers;
        cuda::DeviceRankSum args;
        args.num_inputs = ranks;
        args.count = count;
        args.type = bf16 ? cuda::GemmElementType::kBf16 : cuda::GemmElementType::kFloat32;
        for (int r = 0; r < ranks; ++r) {
          inputs.push_back(RandomFloats(count, rng));
          std::vector<uint8_t> bytes(count * (bf16 ? 2 : 4));
          if (bf16) {
            // Inputs exactly representable in bf16, so the reference sums the same values.
            for (int64_t i = 0; i < count; ++i) {
              const uint16_t bits = FloatToBF16(inputs[r][i]);
              inputs[r][i] = BF16ToFloat(bits);
              std::memcpy(&bytes[2 * i], &bits, 2);
            }
          } else {
            std::memcpy(bytes.data(), inputs[r].data(), bytes.size());
          }
          buffers.push_back(std::make_unique<DeviceBuffer<uint8_t>>(bytes));
          args.inputs[r] = buffers.back()->get();
        }
        DeviceBuffer<uint8_t> output(std::vector<uint8_t>(count * (bf16 ? 2 : 4), 0xFF));  // NaN
        args.output = output.get();
        ASSERT_TRUE(cuda::SumRanks(args, nullptr).ok());
        FF_CUDA_ASSERT(cudaDeviceSynchronize());
        const std::vector<uint8_t> result = output.ToHost();
        for (int64_t i = 0; i < count; ++i) {
          const float expected = RankOrderSum(inputs, i);
          if (bf16) {
            uint16_t bits;
            std::memcpy(&bits, &result[2 * i], 2);
            ASSERT_EQ(bits, FloatToBF16(expected)) << "element " << i;
          } else {
            float value;
            std::memcpy(&value, &result[4 * i], 4);
            ASSERT_EQ(value, expected) << "element " << i;  // same additions, same order
          }
        }
      }
    }
  }
}

TEST(RankSumTest, RejectsBadArguments) {
  FF_SKIP_WITHOUT_GPU();
  DeviceBuffer<float> a(16), b(16);
  cuda::DeviceRankSum args;
  args.num_inputs = 2;
  args.inputs[0] = a.get();
  args.inputs[1] = b.get();
  args.count = 16;
  args.output = a.get() + 8;  // overlaps inputs[0]
  EXPECT_TRUE(absl::IsInvalidArgument(cuda::SumRanks(args, nullptr)));
  args.output = nullptr;
  EXPECT_TRUE(absl::IsInvalidArgument(cuda::SumRanks(args, nullptr)));
  args.num_inputs = cuda::kMaxRankSumInputs + 1;
  EXPECT_TRUE(absl::IsInvalidArgument(cuda::SumRanks(args, nullptr)));
}

// Runs body(rank) on `size` threads, each the rank of one DeviceThreadGroup on device 0.
void RunThreadGroup(int size, const std::function<void(DeviceThreadGroupCommunicator&)>& body,
                    std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  FF_CUDA_ASSERT(cudaSetDevice(0));
  auto group = DeviceThreadGroup::Create(size, 0, timeout);
  ASSERT_TRUE(group.ok()) << group.status();
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank) {
    threads.emplace_back([&, rank] {
      ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
      body((*group)->Rank(rank));
    });
  }
  for (std::thread& thread : threads) thread.join();
}

template <typename T>
std::vector<T> CopyToHost(const T* device, int64_t count, cudaStream_t stream) {
  std::vector<T> host(count);
  EXPECT_EQ(cudaMemcpyAsync(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost, stream),
            cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  return host;
}

// Every collective of the thread group, several rounds in a row (the events and slots are
// reused), against what the ranks' host copies say the result must be.
TEST(DeviceThreadGroupTest, CollectivesGiveTheDefinedResults) {
  FF_SKIP_WITHOUT_GPU();
  const uint64_t seed = cuda::testing::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  constexpr int kRanks = 3;
  constexpr int64_t kCount = 1537;  // odd: no vector-width assumptions
  constexpr int kRounds = 4;
  // inputs[round][rank]
  std::vector<std::vector<std::vector<float>>> inputs(kRounds);
  std::mt19937_64 rng(seed);
  for (auto& round : inputs) {
    for (int r = 0; r < kRanks; ++r) round.push_back(RandomFloats(kCount, rng));
  }
  RunThreadGroup(kRanks, [&](DeviceThreadGroupCommunicator& comm) {
    const int rank = comm.rank();
    const cudaStream_t stream = comm.stream();
    for (int round = 0; round < kRounds; ++round) {
      SCOPED_TRACE(::testing::Message() << "rank " << rank << ", round " << round);
      const std::vector<float>& mine = inputs[round][rank];
      // float32 all-reduce: the rank-order sum, identical on every rank.
      DeviceBuffer<float> data(mine);
      ASSERT_TRUE(comm.AllReduceSum(data.get(), kCount).ok());
      const std::vector<float> reduced = CopyToHost(data.get(), kCount, stream);
      for (int64_t i = 0; i < kCount; ++i) {
        ASSERT_EQ(reduced[i], RankOrderSum(inputs[round], i)) << i;
      }
      // bf16 all-reduce: each rank's bf16 values summed in float in rank order, one rounding.
      std::vector<uint16_t> mine_bf16(kCount);
      for (int64_t i = 0; i < kCount; ++i) mine_bf16[i] = FloatToBF16(mine[i]);
      DeviceBuffer<uint16_t> data_bf16(mine_bf16);
      ASSERT_TRUE(comm.AllReduceSumBFloat16(data_bf16.get(), kCount).ok());
      const std::vector<uint16_t> reduced_bf16 = CopyToHost(data_bf16.get(), kCount, stream);
      for (int64_t i = 0; i < kCount; ++i) {
        float sum = 0.0f;
        for (int r = 0; r < kRanks; ++r) sum += BF16ToFloat(FloatToBF16(inputs[round][r][i]));
        ASSERT_EQ(reduced_bf16[i], FloatToBF16(sum)) << i;
      }
      // All-gather, in place (this rank's slot of the output is its input).
      DeviceBuffer<float> gathered(std::vector<float>(kRanks * kCount, std::nanf("")));
      ASSERT_EQ(cudaMemcpyAsync(gathered.get() + rank * kCount, mine.data(), kCount * 4,
                                cudaMemcpyHostToDevice, stream),
                cudaSuccess);
      ASSERT_TRUE(
          comm.AllGather(gathered.get() + rank * kCount, kCount * sizeof(float), gathered.get())
              .ok());
      const std::vector<float> all = CopyToHost(gathered.get(), kRanks * kCount, stream);
      for (int s = 0; s < kRanks; ++s) {
        for (int64_t i = 0; i < kCount; ++i) ASSERT_EQ(all[s * kCount + i], inputs[round][s][i]);
      }
      // All-to-all of kRanks slots of 7 floats: slot d of rank s's input lands in rank d's slot s.
      constexpr int64_t kSlot = 7;
      DeviceBuffer<float> to_send(std::vector<float>(mine.begin(), mine.begin() + kRanks * kSlot));
      DeviceBuffer<float> received(std::vector<float>(kRanks * kSlot, std::nanf("")));
      ASSERT_TRUE(comm.AllToAll(to_send.get(), kSlot * sizeof(float), received.get()).ok());
      const std::vector<float> slots = CopyToHost(received.get(), kRanks * kSlot, stream);
      for (int s = 0; s < kRanks; ++s) {
        for (int64_t i = 0; i < kSlot; ++i) {
          ASSERT_EQ(slots[s * kSlot + i], inputs[round][s][rank * kSlot + i]);
        }
      }
      // Broadcast from a root that changes every round.
      const int root = round % kRanks;
      DeviceBuffer<float> broadcast(mine);
      ASSERT_TRUE(comm.Broadcast(broadcast.get(), kCount * sizeof(float), root).ok());
      const std::vector<float> rooted = CopyToHost(broadcast.get(), kCount, stream);
      ASSERT_EQ(rooted, inputs[round][root]);
      ASSERT_TRUE(comm.Barrier().ok());
    }
  });
}

TEST(DeviceThreadGroupTest, AMissingRankTimesOutAndBreaksTheGroup) {
  FF_SKIP_WITHOUT_GPU();
  RunThreadGroup(
      2,
      [&](DeviceThreadGroupCommunicator& comm) {
        DeviceBuffer<float> data(std::vector<float>(8, 1.0f));
        if (comm.rank() == 0) {
          const absl::Status status = comm.AllReduceSum(data.get(), 8);
          EXPECT_TRUE(absl::IsDeadlineExceeded(status)) << status;
        } else {
          // Rank 1 never calls until rank 0 has given up; then the group is broken for it too.
          std::this_thread::sleep_for(std::chrono::milliseconds(600));
          const absl::Status status = comm.AllReduceSum(data.get(), 8);
          EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
        }
      },
      std::chrono::milliseconds(200));
}

// The adapter on a thread group, called with a caller stream that is not the communicator's:
// results read back on the CALLER's stream only must already be complete (the join), and the
// caller's earlier writes must be seen (the fork). The logits gather with uneven slices.
TEST(DeviceStreamCollectivesTest, ForkJoinOntoTheCallerStreamAndGatherColumns) {
  FF_SKIP_WITHOUT_GPU();
  const uint64_t seed = cuda::testing::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  constexpr int kRanks = 2;
  constexpr int64_t kRows = 5, kVocab = 97;  // slices 49 and 48
  const std::array<int64_t, 2> begins = {0, 49}, widths = {49, 48};
  std::mt19937_64 rng(seed);
  std::vector<std::vector<float>> slices, partials;
  for (int r = 0; r < kRanks; ++r) {
    slices.push_back(RandomFloats(kRows * widths[r], rng));
    partials.push_back(RandomFloats(4096, rng));
  }
  RunThreadGroup(kRanks, [&](DeviceThreadGroupCommunicator& comm) {
    const int rank = comm.rank();
    cudaStream_t caller = nullptr;
    ASSERT_EQ(cudaStreamCreateWithFlags(&caller, cudaStreamNonBlocking), cudaSuccess);
    auto collectives = DeviceStreamCollectives::Create(comm);
    ASSERT_TRUE(collectives.ok()) << collectives.status();
    for (int round = 0; round < 3; ++round) {
      // The caller writes its partial sums on its own stream right before the all-reduce.
      std::vector<uint16_t> bf16(partials[rank].size());
      for (size_t i = 0; i < bf16.size(); ++i) bf16[i] = FloatToBF16(partials[rank][i]);
      DeviceBuffer<uint16_t> data(bf16.size());
      ASSERT_EQ(
          cudaMemcpyAsync(data.get(), bf16.data(), bf16.size() * 2, cudaMemcpyHostToDevice, caller),
          cudaSuccess);
      ASSERT_TRUE((*collectives)
                      ->AllReduceSum(data.get(), static_cast<int64_t>(bf16.size()),
                                     DeviceElementType::kBFloat16, /*exact=*/false, caller)
                      .ok());
      const std::vector<uint16_t> reduced = CopyToHost(data.get(), bf16.size(), caller);
      for (size_t i = 0; i < bf16.size(); ++i) {
        const float sum =
            BF16ToFloat(FloatToBF16(partials[0][i])) + BF16ToFloat(FloatToBF16(partials[1][i]));
        ASSERT_EQ(reduced[i], FloatToBF16(sum)) << i;
      }
      DeviceBuffer<float> local(kRows * widths[rank]);
      ASSERT_EQ(cudaMemcpyAsync(local.get(), slices[rank].data(), slices[rank].size() * 4,
                                cudaMemcpyHostToDevice, caller),
                cudaSuccess);
      DeviceBuffer<float> scratch(GatherScratchFloats(kRows, widths));
      DeviceBuffer<float> full(std::vector<float>(kRows * kVocab, std::nanf("")));
      ASSERT_TRUE((*collectives)
                      ->GatherColumns(local.get(), kRows, begins, widths, scratch.get(), full.get(),
                                      kVocab, caller)
                      .ok());
      const std::vector<float> logits = CopyToHost(full.get(), kRows * kVocab, caller);
      for (int64_t row = 0; row < kRows; ++row) {
        for (int r = 0; r < kRanks; ++r) {
          for (int64_t c = 0; c < widths[r]; ++c) {
            ASSERT_EQ(logits[row * kVocab + begins[r] + c], slices[r][row * widths[r] + c])
                << "row " << row << ", rank " << r << ", column " << c;
          }
        }
      }
    }
    const AllReduceStats stats = (*collectives)->stats();
    EXPECT_EQ(stats.calls, 3);
    EXPECT_EQ(stats.raw_bytes, 3 * 4096 * 4);   // 2 (n - 1) / n = 1 at n = 2
    EXPECT_EQ(stats.wire_bytes, 3 * 4096 * 2);  // bf16 on the wire
    ASSERT_TRUE((*collectives)->Synchronize().ok());
    collectives->reset();
    cudaStreamDestroy(caller);
  });
}

// NCCL itself with one rank (the one-GPU machine): the adapter's plain float32 and bf16 sums are
// the identity, the gather a strided copy; with a table that says "compress from 0 bytes", the
// float32 all-reduce takes the INT8 path and its error stays within the stated bound.
TEST(NcclSingleRankTest, StreamCollectivesOverARealNcclCommunicator) {
  FF_SKIP_WITHOUT_GPU();
  const uint64_t seed = cuda::testing::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  FF_CUDA_ASSERT(cudaSetDevice(0));
  const char* preset = std::getenv("NCCL_NVLS_ENABLE");
  const bool was_set = preset != nullptr;
  const absl::StatusOr<std::string> id = CreateNcclUniqueId();
  ASSERT_TRUE(id.ok()) << id.status();
  if (!was_set) {
    ASSERT_NE(std::getenv("NCCL_NVLS_ENABLE"), nullptr);
    EXPECT_STREQ(std::getenv("NCCL_NVLS_ENABLE"), "0");
  }
  auto nccl = NcclCommunicator::Create({.rank = 0, .size = 1, .unique_id = *id, .device = 0});
  ASSERT_TRUE(nccl.ok()) << nccl.status();
  static constexpr std::array<AllReduceThreshold, 1> kAlwaysCompress = {
      {{1, 0, AllReduceAlgorithm::kInt8Compressed}}};
  auto collectives = DeviceStreamCollectives::Create(
      **nccl,
      {.compression_allowed = true, .compression_block_size = 128, .thresholds = kAlwaysCompress});
  ASSERT_TRUE(collectives.ok()) << collectives.status();
  cudaStream_t caller = nullptr;
  FF_CUDA_ASSERT(cudaStreamCreateWithFlags(&caller, cudaStreamNonBlocking));
  std::mt19937_64 rng(seed);
  const std::vector<float> values = RandomFloats(1000, rng);

  DeviceBuffer<float> exact(values);
  ASSERT_TRUE(
      (*collectives)
          ->AllReduceSum(exact.get(), 1000, DeviceElementType::kFloat32, /*exact=*/true, caller)
          .ok());
  EXPECT_EQ(CopyToHost(exact.get(), 1000, caller), values);

  std::vector<uint16_t> bf16(values.size());
  for (size_t i = 0; i < bf16.size(); ++i) bf16[i] = FloatToBF16(values[i]);
  DeviceBuffer<uint16_t> half(bf16);
  ASSERT_TRUE((*collectives)
                  ->AllReduceSum(half.get(), 1000, DeviceElementType::kBFloat16, false, caller)
                  .ok());
  EXPECT_EQ(CopyToHost(half.get(), 1000, caller), bf16);
  EXPECT_EQ((*collectives)->last_algorithm(), AllReduceAlgorithm::kPlain);  // bf16: never INT8

  DeviceBuffer<float> compressed(values);
  ASSERT_TRUE((*collectives)
                  ->AllReduceSum(compressed.get(), 1000, DeviceElementType::kFloat32, false, caller)
                  .ok());
  EXPECT_EQ((*collectives)->last_algorithm(), AllReduceAlgorithm::kInt8Compressed);
  const std::vector<float> lossy = CopyToHost(compressed.get(), 1000, caller);
  ASSERT_TRUE((*collectives)->Synchronize().ok());
  // One rank: |out - x| <= scale / 2 + scale_reduced / 2 per block, scale = absmax / 127 (the
  // reduced block's absmax is within half a step of the input's); 1e-6 relative float slack.
  for (int64_t block = 0; block * 128 < 1000; ++block) {
    float absmax = 0.0f;
    const int64_t end = std::min<int64_t>(1000, (block + 1) * 128);
    for (int64_t i = block * 128; i < end; ++i) absmax = std::max(absmax, std::fabs(values[i]));
    const float scale = absmax / 127.0f;
    const float bound = scale / 2 + (absmax + scale / 2) / 127.0f / 2 + absmax * 1e-6f;
    for (int64_t i = block * 128; i < end; ++i) {
      ASSERT_LE(std::fabs(lossy[i] - values[i]), bound) << "element " << i;
    }
  }

  constexpr int64_t kRows = 3, kCols = 9;
  const std::array<int64_t, 1> begins = {2}, widths = {5};
  const std::vector<float> slice(values.begin(), values.begin() + kRows * 5);
  DeviceBuffer<float> local(slice);
  DeviceBuffer<float> scratch(GatherScratchFloats(kRows, widths));
  DeviceBuffer<float> full(std::vector<float>(kRows * kCols, -1.0f));
  ASSERT_TRUE((*collectives)
                  ->GatherColumns(local.get(), kRows, begins, widths, scratch.get(), full.get(),
                                  kCols, caller)
                  .ok());
  const std::vector<float> gathered = CopyToHost(full.get(), kRows * kCols, caller);
  for (int64_t row = 0; row < kRows; ++row) {
    for (int64_t c = 0; c < kCols; ++c) {
      const float expected = c >= 2 && c < 7 ? slice[row * 5 + c - 2] : -1.0f;
      ASSERT_EQ(gathered[row * kCols + c], expected) << row << ", " << c;
    }
  }
  collectives->reset();
  nccl->reset();
  cudaStreamDestroy(caller);
}

// The integer GEMM's dynamic shared-memory opt-in is per device: the same prefill-sized GEMM on
// GPU 1 after GPU 0 (one process, one thread) must launch and give the same bits.
TEST(PerDeviceAttributeTest, IntegerGemmRunsOnTheSecondGpuOfAProcess) {
  FF_SKIP_WITHOUT_GPU();
  FF_SKIP_WITH_FEWER_GPUS(2);
  const uint64_t seed = cuda::testing::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  constexpr int64_t m = 512, n = 256, k = 1024;
  std::uniform_int_distribution<int> code(-127, 127);
  std::vector<int8_t> x(m * k), w(n * k);
  for (int8_t& v : x) v = static_cast<int8_t>(code(rng));
  for (int8_t& v : w) v = static_cast<int8_t>(code(rng));
  const std::vector<uint16_t> x_scales(m, 0x1C00), w_scales(n, 0x1C00);  // FP16 2^-8
  std::vector<std::vector<float>> results;
  for (int device : {0, 1}) {
    SCOPED_TRACE(::testing::Message() << "device " << device);
    FF_CUDA_ASSERT(cudaSetDevice(device));
    DeviceBuffer<int8_t> dx(x), dw(w);
    DeviceBuffer<uint16_t> dxs(x_scales), dws(w_scales);
    DeviceBuffer<float> y(std::vector<float>(m * n, std::nanf("")));
    cuda::DeviceW8A8Gemm args;
    args.m = m;
    args.n = n;
    args.k = k;
    args.x_codes = dx.get();
    args.x_scales = dxs.get();
    args.w_codes = dw.get();
    args.w_scales = dws.get();
    args.y = y.get();
    const absl::Status status = cuda::GemmW8A8(args, nullptr);
    ASSERT_TRUE(status.ok()) << status;
    FF_CUDA_ASSERT(cudaDeviceSynchronize());
    results.push_back(y.ToHost());
  }
  FF_CUDA_ASSERT(cudaSetDevice(0));
  ASSERT_EQ(results[0], results[1]);
  EXPECT_FALSE(std::isnan(results[0][0]));
}

}  // namespace
}  // namespace flatfleet::collectives
