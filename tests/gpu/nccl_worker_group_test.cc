// A tensor-parallel group of two GPU workers through the worker service, as the coordinator runs
// it (needs 2 GPUs; skips otherwise): each worker says its groups need NCCL, rank 0's
// OpenRendezvous returns an NCCL unique id next to the Gloo store, both LoadShard calls join
// NCCL, and greedy output through rank 0's RunWork equals one GPU worker's. Stopping rank 1 then
// fails rank 0 within the group timeout (the group ends, as on the Gloo path).
#include <cuda_runtime.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "kernels/cuda/backend/cuda_backend.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/model_comparison.h"
#include "tests/gpu/nccl_test_group.h"
#include "tests/worker_service/read_work_result.h"
#include "worker/serving/continuous_batcher_factory.h"
#include "worker/serving/model_loader.h"
#include "worker/serving/worker_process.h"

namespace flatfleet::engine {
namespace {

using kernels::cuda_backend::CudaBackend;

void SetDeadline(grpc::ClientContext& context, int seconds = 120) {
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

struct GpuWorker {
  std::unique_ptr<CudaBackend> backend;  // outlives the process and its model
  std::unique_ptr<WorkerProcess> process;
  std::unique_ptr<v1::WorkerService::Stub> stub;
};

GpuWorker StartGpuWorker(int device) {
  GpuWorker worker;
  EXPECT_EQ(cudaSetDevice(device), cudaSuccess);
  auto backend = CudaBackend::Create({.device = device});
  EXPECT_TRUE(backend.ok()) << backend.status();
  if (!backend.ok()) return worker;
  worker.backend = *std::move(backend);
  ContinuousBatcherOptions batcher;
  batcher.kv_cache_blocks = 512;
  batcher.kv_cache_dtype = KvCacheDtype::kBFloat16;
  WorkerProcessOptions options;
  options.metrics_listen_address.clear();
  CpuModelLoaderOptions loader;
  loader.backend = worker.backend.get();
  loader.cuda_device = device;
  options.service.model_loader = CpuModelLoader(loader);
  options.service.engine_factory = ContinuousBatcherFactory(batcher);
  options.service.group_batcher_options = batcher;
  options.service.device_backend = worker.backend.get();
  options.service.poll_interval = absl::Milliseconds(10);
  options.service.group_heartbeat_interval = absl::Milliseconds(200);
  auto process = WorkerProcess::Start(std::move(options));
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return worker;
  worker.process = *std::move(process);
  worker.stub = v1::WorkerService::NewStub(
      grpc::CreateChannel(worker.process->address(), grpc::InsecureChannelCredentials()));
  return worker;
}

v1::HealthResponse Health(GpuWorker& worker) {
  grpc::ClientContext context;
  SetDeadline(context, 10);
  v1::HealthResponse response;
  EXPECT_TRUE(worker.stub->Health(&context, v1::HealthRequest(), &response).ok());
  return response;
}

// OpenRendezvous on rank 0 (NCCL when more than one rank), then every rank's LoadShard at once.
std::vector<grpc::Status> LoadGroup(std::vector<GpuWorker>& ranks, const std::string& model) {
  v1::Rendezvous rendezvous;
  rendezvous.set_group_id("gpu-group");
  for (GpuWorker& rank : ranks) rendezvous.add_peer_addresses(rank.process->address());
  rendezvous.set_timeout_ms(10000);
  rendezvous.set_all_reduce_compression(v1::ALL_REDUCE_COMPRESSION_INT8);  // allowed only
  if (ranks.size() > 1) {
    grpc::ClientContext context;
    SetDeadline(context, 30);
    v1::OpenRendezvousRequest open;
    open.set_group_id("gpu-group");
    open.set_tp_size(static_cast<uint32_t>(ranks.size()));
    open.set_backend(v1::COLLECTIVE_BACKEND_NCCL);
    open.set_host("127.0.0.1");
    v1::OpenRendezvousResponse opened;
    const grpc::Status status = ranks[0].stub->OpenRendezvous(&context, open, &opened);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(opened.backend(), v1::COLLECTIVE_BACKEND_NCCL);
    EXPECT_EQ(opened.nccl_unique_id().size(), 128u);
    EXPECT_FALSE(opened.store_address().empty());
    rendezvous.set_backend(v1::COLLECTIVE_BACKEND_NCCL);
    rendezvous.set_store_address(opened.store_address());
    rendezvous.set_nccl_unique_id(opened.nccl_unique_id());
  }
  std::vector<grpc::Status> statuses(ranks.size());
  std::vector<std::thread> loaders;
  for (size_t r = 0; r < ranks.size(); ++r) {
    loaders.emplace_back([&, r] {
      v1::LoadShardRequest request;
      request.set_model_path(model);
      request.set_model_name("m");
      request.set_tp_rank(static_cast<uint32_t>(r));
      request.set_tp_size(static_cast<uint32_t>(ranks.size()));
      request.set_device_index(-1);  // the worker's own --gpu
      *request.mutable_rendezvous() = rendezvous;
      grpc::ClientContext context;
      SetDeadline(context);
      v1::LoadShardResponse response;
      statuses[r] = ranks[r].stub->LoadShard(&context, request, &response);
    });
  }
  for (std::thread& loader : loaders) loader.join();
  return statuses;
}

std::vector<std::vector<uint32_t>> Generate(GpuWorker& rank0,
                                            const std::vector<std::string>& prompts) {
  grpc::ClientContext context;
  SetDeadline(context);
  auto stream = rank0.stub->RunWork(&context);
  for (size_t i = 0; i < prompts.size(); ++i) {
    v1::WorkItem item;
    item.set_work_id(i + 1);
    item.mutable_submit()->set_prompt(prompts[i]);
    item.mutable_submit()->mutable_sampling()->set_max_tokens(16);
    item.mutable_submit()->mutable_sampling()->set_temperature(0.0f);
    stream->Write(item);
  }
  stream->WritesDone();
  std::vector<std::vector<uint32_t>> tokens(prompts.size());
  for (v1::WorkResult result; testing::ReadWorkResult(*stream, &result);) {
    EXPECT_TRUE(result.has_response()) << result.error().message();
    const size_t index = result.work_id() - 1;
    if (index < tokens.size()) {
      tokens[index].assign(result.response().token_ids().begin(),
                           result.response().token_ids().end());
    }
  }
  const grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  return tokens;
}

TEST(NcclWorkerGroupTest, TwoGpuWorkersServeLikeOneAndFailTogether) {
  FF_SKIP_WITHOUT_GPU();
  FF_SKIP_WITH_FEWER_GPUS(2);
  const std::string model = (SharedDir() / "models/stories260K").string();
  // TinyStories openings: confident continuations, far from bf16 near-ties.
  const std::vector<std::string> prompts = {"Once upon a time", "Lily and Ben went to the",
                                            "The little dog", "One day, Tom saw a"};
  std::vector<std::vector<uint32_t>> expected;
  {
    std::vector<GpuWorker> single;
    single.push_back(StartGpuWorker(0));
    ASSERT_NE(single[0].process, nullptr);
    EXPECT_EQ(Health(single[0]).collective_backend(), v1::COLLECTIVE_BACKEND_NCCL);
    for (const grpc::Status& status : LoadGroup(single, model)) {
      ASSERT_TRUE(status.ok()) << status.error_message();
    }
    expected = Generate(single[0], prompts);
  }
  std::vector<GpuWorker> group;
  group.push_back(StartGpuWorker(0));
  group.push_back(StartGpuWorker(1));
  ASSERT_NE(group[0].process, nullptr);
  ASSERT_NE(group[1].process, nullptr);
  for (const grpc::Status& status : LoadGroup(group, model)) {
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_EQ(Health(group[0]).state(), v1::WORKER_STATE_READY);
  EXPECT_EQ(Generate(group[0], prompts), expected);

  // Rank 1 goes away: rank 0's next heartbeat (200 ms) or collective fails, and it turns FAILED
  // well within the 10 s group timeout.
  group[1].process.reset();
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  v1::HealthResponse health;
  do {
    absl::SleepFor(absl::Milliseconds(100));
    health = Health(group[0]);
  } while (health.state() != v1::WORKER_STATE_FAILED && absl::Now() < deadline);
  EXPECT_EQ(health.state(), v1::WORKER_STATE_FAILED) << health.message();
  EXPECT_NE(health.message().find("gpu-group"), std::string::npos) << health.message();
}

}  // namespace
}  // namespace flatfleet::engine
