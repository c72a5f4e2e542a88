// Tensor parallelism on the GPU engine: the model's all-reduces and logits gather on device
// buffers. On ONE GPU the ranks are threads sharing the device through DeviceThreadGroup (the
// same StreamCollectives path NCCL takes, with its fork/join onto each model's own stream); on
// two GPUs the ranks run over NCCL. Either way a TP=2 model must reproduce the TP=1 model on the
// shared fixtures and stories260K: the same greedy tokens (host sampling through the Generator,
// and device sampling through ForwardAndSample, where every rank samples the same gathered
// logits), and logits within bf16 summation-order noise.
#include <cuda_runtime.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/safetensors.h"
#include "common/tensor_slicing.h"
#include "gtest/gtest.h"
#include "kernels/cuda/backend/cuda_backend.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/model_comparison.h"
#include "tests/gpu/nccl_test_group.h"
#include "worker/collectives/device_stream_collectives.h"
#include "worker/collectives/device_thread_group.h"
#include "worker/collectives/nccl_communicator.h"
#include "worker/generate/generator.h"
#include "worker/model/llama_model.h"

namespace flatfleet::engine {
namespace {

using collectives::DeviceCommunicator;
using collectives::DeviceStreamCollectives;
using kernels::cuda_backend::CudaBackend;

// What every run feeds its model: the reference's scored sequences and greedy prompt.
struct Workload {
  std::vector<std::vector<int32_t>> sequences;
  std::vector<int32_t> greedy_prompt;
  int64_t greedy_tokens = 16;
};

std::vector<int32_t> ReadIds(const SafetensorsFile& file, const std::string& name, int64_t row) {
  Tensor ids = *ToFloat32(*file.Find(name));
  return std::vector<int32_t>(ids.row(row), ids.row(row) + ids.dim(-1));
}

Workload LoadWorkload(const std::filesystem::path& dir) {
  Workload workload;
  auto reference = SafetensorsFile::Open(dir / "reference.safetensors");
  EXPECT_TRUE(reference.ok()) << reference.status();
  if (!reference.ok()) return workload;
  const int64_t rows = (*reference)->Find("input_ids")->shape[0];
  for (int64_t r = 0; r < rows; ++r) {
    workload.sequences.push_back(ReadIds(**reference, "input_ids", r));
  }
  workload.greedy_prompt = ReadIds(**reference, "greedy_prompt", 0);
  workload.greedy_tokens = (*reference)->Find("greedy")->shape[1];
  return workload;
}

struct RunResult {
  Tensor logits;                       // every position of every sequence
  std::vector<int32_t> greedy;         // Generator (host sampling of the gathered logits)
  std::vector<int32_t> device_greedy;  // ForwardAndSample (device sampling)
  TensorParallelStats traffic;
};

// Loads `dir` on a fresh CUDA backend of `device` as rank `rank` of `size` and runs the workload.
RunResult RunModel(const std::filesystem::path& dir, const Workload& workload, int device, int rank,
                   int size, collectives::StreamCollectives* collectives) {
  RunResult result;
  EXPECT_EQ(cudaSetDevice(device), cudaSuccess);
  auto backend = CudaBackend::Create({.device = device});
  EXPECT_TRUE(backend.ok()) << backend.status();
  if (!backend.ok()) return result;
  ModelOptions options;
  options.tensor_parallel.rank = rank;
  options.tensor_parallel.size = size;
  options.tensor_parallel.device_collectives = collectives;
  auto model = LoadLlamaModel(dir, **backend, options);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return result;
  const int64_t sequences = static_cast<int64_t>(workload.sequences.size());
  {
    auto cache = (*model)->CreateKvCache(256, sequences);
    EXPECT_TRUE(cache.ok()) << cache.status();
    if (!cache.ok()) return result;
    std::vector<SequenceChunk> chunks;
    for (const auto& tokens : workload.sequences) {
      chunks.push_back({*(*cache)->AddSequence(), tokens, /*all_logits=*/true});
    }
    auto logits = (*model)->Forward(chunks, **cache);
    EXPECT_TRUE(logits.ok()) << logits.status();
    if (logits.ok()) result.logits = *std::move(logits);
  }
  GenerationRequest request;
  request.prompt = workload.greedy_prompt;
  request.params.max_tokens = workload.greedy_tokens;
  request.params.ignore_eos = true;
  auto generated = Generator(**model, nullptr).Generate({&request, 1});
  EXPECT_TRUE(generated.ok()) << generated.status();
  if (generated.ok()) result.greedy = (*generated)[0].tokens;

  // Device sampling: the prompt, then one decode step per token, greedy.
  auto cache = (*model)->CreateKvCache(256, 1);
  EXPECT_TRUE(cache.ok()) << cache.status();
  if (!cache.ok()) return result;
  const SequenceId sequence = *(*cache)->AddSequence();
  std::vector<int32_t> next = workload.greedy_prompt;
  for (int64_t step = 0; step < workload.greedy_tokens; ++step) {
    const SequenceChunk chunk{sequence, next, false};
    const kernels::DeviceSamplingParams greedy{.temperature = 0.0f,
                                               .step = static_cast<uint64_t>(step)};
    auto tokens = (*model)->ForwardAndSample({&chunk, 1}, **cache, {&greedy, 1});
    EXPECT_TRUE(tokens.ok()) << tokens.status();
    if (!tokens.ok()) break;
    result.device_greedy.push_back((*tokens)[0]);
    next = {(*tokens)[0]};
  }
  result.traffic = (*model)->tensor_parallel_stats();
  return result;
}

double RelativeError(const Tensor& actual, const Tensor& expected) {
  double diff = 0, norm = 0;
  for (int64_t i = 0; i < expected.size(); ++i) {
    const double d = actual.data()[i] - expected.data()[i];
    diff += d * d;
    norm += static_cast<double>(expected.data()[i]) * expected.data()[i];
  }
  return std::sqrt(diff / norm);
}

// The TP=2 ranks' results against the TP=1 model's.
void ExpectSameAsSingleRank(const std::vector<RunResult>& ranks, const RunResult& single) {
  ASSERT_FALSE(single.greedy.empty());
  ASSERT_EQ(single.device_greedy, single.greedy);  // the two samplers agree at TP=1
  for (size_t rank = 0; rank < ranks.size(); ++rank) {
    SCOPED_TRACE(::testing::Message() << "rank " << rank);
    const RunResult& r = ranks[rank];
    ASSERT_EQ(r.logits.shape(), single.logits.shape());
    // Every rank holds the same gathered logits, bit for bit.
    EXPECT_EQ(std::vector<float>(r.logits.data(), r.logits.data() + r.logits.size()),
              std::vector<float>(ranks[0].logits.data(),
                                 ranks[0].logits.data() + ranks[0].logits.size()));
    // bf16 partial sums rounded per rank before the sum (one extra bf16 rounding per
    // row-parallel layer, 2^-8 relative): well under 1% of the logits' norm on these models.
    const double error = RelativeError(r.logits, single.logits);
    EXPECT_LT(error, 1e-2);
    std::printf("rank %zu: logits relative error vs TP=1 %.3e\n", rank, error);
    EXPECT_EQ(r.greedy, single.greedy);
    EXPECT_EQ(r.device_greedy, single.greedy);
    // Two all-reduces per layer per forward went through the device collectives.
    EXPECT_GT(r.traffic.layer_all_reduce.calls, 0);
    EXPECT_GT(r.traffic.logits_all_gather_calls, 0);
  }
}

class TensorParallelDeviceTest : public ::testing::TestWithParam<const char*> {};

// TP=2 as two threads sharing GPU 0 (no NCCL: it refuses two ranks on one device).
TEST_P(TensorParallelDeviceTest, TwoRanksOnOneGpuEqualOneRank) {
  FF_SKIP_WITHOUT_GPU();
  const std::filesystem::path dir = SharedDir() / GetParam();
  const Workload workload = LoadWorkload(dir);
  ASSERT_FALSE(workload.sequences.empty());
  const RunResult single = RunModel(dir, workload, 0, 0, 1, nullptr);
  constexpr int kRanks = 2;
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  auto group = collectives::DeviceThreadGroup::Create(kRanks, 0);
  ASSERT_TRUE(group.ok()) << group.status();
  std::vector<RunResult> ranks(kRanks);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < kRanks; ++rank) {
    threads.emplace_back([&, rank] {
      ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
      auto collectives = DeviceStreamCollectives::Create((*group)->Rank(rank));
      ASSERT_TRUE(collectives.ok()) << collectives.status();
      ranks[rank] = RunModel(dir, workload, 0, rank, kRanks, collectives->get());
    });
  }
  for (std::thread& thread : threads) thread.join();
  ExpectSameAsSingleRank(ranks, single);
}

// TP=2 over NCCL, one GPU per rank (needs 2 GPUs; skips with a message otherwise).
TEST_P(TensorParallelDeviceTest, TwoGpusOverNcclEqualOneRank) {
  FF_SKIP_WITHOUT_GPU();
  FF_SKIP_WITH_FEWER_GPUS(2);
  const std::filesystem::path dir = SharedDir() / GetParam();
  const Workload workload = LoadWorkload(dir);
  ASSERT_FALSE(workload.sequences.empty());
  const RunResult single = RunModel(dir, workload, 0, 0, 1, nullptr);
  constexpr int kRanks = 2;
  std::vector<RunResult> ranks(kRanks);
  collectives::testing::RunNcclRanks(kRanks, [&](collectives::NcclCommunicator& communicator) {
    auto collectives = DeviceStreamCollectives::Create(communicator);
    ASSERT_TRUE(collectives.ok()) << collectives.status();
    const int rank = communicator.rank();
    ranks[rank] = RunModel(dir, workload, rank, rank, kRanks, collectives->get());
  });
  ExpectSameAsSingleRank(ranks, single);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TensorParallelDeviceTest,
                         ::testing::Values("fixtures/llama-tiny", "fixtures/mixtral-tiny",
                                           "models/stories260K"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string name = std::filesystem::path(info.param).filename();
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

// A device model in a group needs device collectives (a host communicator is not enough).
TEST(TensorParallelDeviceTest, AShardedDeviceModelWithoutDeviceCollectivesIsRefused) {
  FF_SKIP_WITHOUT_GPU();
  auto backend = CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status();
  ModelOptions options;
  options.tensor_parallel.rank = 0;
  options.tensor_parallel.size = 2;
  auto model = LoadLlamaModel(SharedDir() / "models/stories260K", **backend, options);
  ASSERT_FALSE(model.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(model.status())) << model.status();
  EXPECT_NE(model.status().message().find("device collectives"), std::string::npos)
      << model.status();
}

}  // namespace
}  // namespace flatfleet::engine
