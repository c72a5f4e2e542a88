// Tensor-parallel worker groups through the real gRPC WorkerService (in-process workers on
// loopback): rank 0 opens the rendezvous, every rank's LoadShard joins the group, rank 0 serves
// RunWork and followers replay its step plans. Greedy output of a TP=2 group equals a single
// worker's with FP32 all-reduces and agrees closely with INT8-compressed ones; losing a rank
// fails the group with a clear message instead of hanging.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "http_get.h"
#include "tests/quant/test_random.h"
#include "tests/support/promtool.h"
#include "tests/worker_service/read_work_result.h"
#include "worker/serving/continuous_batcher_factory.h"
#include "worker/serving/model_loader.h"
#include "worker/serving/worker_process.h"

namespace flatfleet::engine {
namespace {

using testing::HttpGet;

std::string FixtureDir(const std::string& name) {
  const char* env = std::getenv("FLATFLEET_SHARED_DIR");
  return (std::filesystem::path(env ? env : FLATFLEET_SHARED_DIR) / "fixtures" / name).string();
}

void SetDeadline(grpc::ClientContext& context, int seconds = 120) {
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

// Value of the sample `name_and_labels` on a Prometheus page, or -1 when absent.
double SampleValue(const std::string& page, const std::string& name_and_labels) {
  const std::string prefix = name_and_labels + " ";
  for (size_t at = page.find(prefix); at != std::string::npos; at = page.find(prefix, at + 1)) {
    if (at == 0 || page[at - 1] == '\n') return std::stod(page.substr(at + prefix.size()));
  }
  return -1;
}

// Random lowercase prompts from `fixed_seed`, else a fresh seed (printed, so a failure can be
// replayed with FLATFLEET_TEST_SEED, which overrides both).
std::vector<std::string> RandomPrompts(int count, unsigned fixed_seed = 0) {
  const bool replay = std::getenv("FLATFLEET_TEST_SEED") != nullptr;
  const unsigned seed = fixed_seed != 0 && !replay
                            ? fixed_seed
                            : static_cast<unsigned>(quant::test_util::FreshSeed());
  std::printf("[ prompts  ] seed %u\n", seed);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> length(4, 24);
  std::uniform_int_distribution<int> letter('a', 'z');
  std::vector<std::string> prompts;
  for (int i = 0; i < count; ++i) {
    std::string prompt;
    for (int n = length(rng); n > 0; --n) prompt += static_cast<char>(letter(rng));
    prompts.push_back(prompt);
  }
  return prompts;
}

struct Worker {
  std::unique_ptr<WorkerProcess> process;
  std::unique_ptr<v1::WorkerService::Stub> stub;
};

Worker StartWorker() {
  WorkerProcessOptions options;
  options.service.model_loader = CpuModelLoader();
  options.service.engine_factory = ContinuousBatcherFactory();
  options.service.poll_interval = absl::Milliseconds(10);
  options.service.group_heartbeat_interval = absl::Milliseconds(200);
  auto process = WorkerProcess::Start(std::move(options));
  EXPECT_TRUE(process.ok()) << process.status();
  Worker worker;
  worker.process = *std::move(process);
  worker.stub = v1::WorkerService::NewStub(
      grpc::CreateChannel(worker.process->address(), grpc::InsecureChannelCredentials()));
  return worker;
}

v1::HealthResponse Health(Worker& worker) {
  grpc::ClientContext context;
  SetDeadline(context, 10);
  v1::HealthResponse response;
  EXPECT_TRUE(worker.stub->Health(&context, v1::HealthRequest(), &response).ok());
  return response;
}

// OpenRendezvous on rank 0, then every rank's LoadShard at once, as the coordinator does.
std::vector<grpc::Status> LoadGroup(std::vector<Worker>& ranks, const std::string& model,
                                    v1::AllReduceCompression compression,
                                    uint32_t timeout_ms = 30000) {
  v1::Rendezvous rendezvous;
  rendezvous.set_group_id("test-group");
  for (Worker& rank : ranks) rendezvous.add_peer_addresses(rank.process->address());
  rendezvous.set_timeout_ms(timeout_ms);
  rendezvous.set_all_reduce_compression(compression);
  if (ranks.size() > 1) {
    grpc::ClientContext context;
    SetDeadline(context, 10);
    v1::OpenRendezvousRequest open;
    open.set_group_id("test-group");
    open.set_tp_size(static_cast<uint32_t>(ranks.size()));
    open.set_host("127.0.0.1");
    v1::OpenRendezvousResponse opened;
    grpc::Status status = ranks[0].stub->OpenRendezvous(&context, open, &opened);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(opened.backend(), v1::COLLECTIVE_BACKEND_GLOO);
    rendezvous.set_store_address(opened.store_address());
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

// Greedy token ids of each prompt, submitted together on one RunWork stream to rank 0.
std::vector<std::vector<uint32_t>> Generate(Worker& rank0, const std::vector<std::string>& prompts,
                                            uint32_t max_tokens, grpc::Status* finished = nullptr) {
  grpc::ClientContext context;
  SetDeadline(context);
  auto stream = rank0.stub->RunWork(&context);
  for (size_t i = 0; i < prompts.size(); ++i) {
    v1::WorkItem item;
    item.set_work_id(i + 1);
    item.mutable_submit()->set_prompt(prompts[i]);
    item.mutable_submit()->mutable_sampling()->set_max_tokens(max_tokens);
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
  grpc::Status status = stream->Finish();
  if (finished != nullptr) {
    *finished = status;
  } else {
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
  return tokens;
}

class TensorParallelGroupTest : public ::testing::TestWithParam<std::string> {
 protected:
  // Greedy output of one whole-model worker.
  std::vector<std::vector<uint32_t>> SingleWorker(const std::vector<std::string>& prompts) {
    std::vector<Worker> single;
    single.push_back(StartWorker());
    for (const grpc::Status& status :
         LoadGroup(single, FixtureDir(GetParam()), v1::ALL_REDUCE_COMPRESSION_NONE)) {
      EXPECT_TRUE(status.ok()) << status.error_message();
    }
    return Generate(single[0], prompts, kMaxTokens);
  }

  static constexpr uint32_t kMaxTokens = 12;
};

// Exact equality of greedy tokens holds only away from near-ties: TP=2 sums each row-parallel
// layer's two halves (and the CPU GEMM blocks K by 512), so its logits differ from TP=1 in the
// last bits, which flips a token whose top two logits are that close. Fresh prompts hit such a
// tie now and then; these fixed prompts (seed 2026) do not, so the test is deterministic. The
// engine test (tests/engine/tensor_parallel_test.cc) bounds the logits themselves.
TEST_P(TensorParallelGroupTest, FloatAllReduceGroupEqualsOneWorker) {
  const std::vector<std::string> prompts = RandomPrompts(4, /*fixed_seed=*/2026);
  const std::vector<std::vector<uint32_t>> expected = SingleWorker(prompts);

  std::vector<Worker> group;
  group.push_back(StartWorker());
  group.push_back(StartWorker());
  for (const grpc::Status& status :
       LoadGroup(group, FixtureDir(GetParam()), v1::ALL_REDUCE_COMPRESSION_NONE)) {
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_EQ(Health(group[0]).state(), v1::WORKER_STATE_READY);
  EXPECT_EQ(Health(group[1]).state(), v1::WORKER_STATE_READY);
  EXPECT_NE(Health(group[1]).message().find("rank 1/2"), std::string::npos);
  EXPECT_GT(Health(group[0]).device_memory_bytes_total(), 0u);

  const std::vector<std::vector<uint32_t>> got = Generate(group[0], prompts, kMaxTokens);
  for (size_t i = 0; i < prompts.size(); ++i) {
    // Up to kMaxTokens: a prompt may reach the end-of-sequence token earlier, on both sides alike.
    ASSERT_FALSE(expected[i].empty()) << prompts[i];
    EXPECT_EQ(got[i], expected[i]) << "prompt '" << prompts[i] << "'";
  }

  // Followers serve no requests.
  grpc::Status follower;
  Generate(group[1], {"x"}, 1, &follower);
  EXPECT_EQ(follower.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(follower.error_message().find("only rank 0"), std::string::npos);

  // Rank 0 stopping ends the group cleanly: the follower drains instead of failing.
  group[0].process.reset();
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (Health(group[1]).state() == v1::WORKER_STATE_READY && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(Health(group[1]).state(), v1::WORKER_STATE_DRAINING) << Health(group[1]).message();
}

// Bounds over 8 random prompts: at least 6 first tokens (sampled right after the prefill) and 60%
// of all greedy tokens equal a single worker's. The engine test bounds the logits themselves;
// here one near-tie flipped by the INT8 noise changes every later token of its sequence, so the
// whole-sequence bound is looser.
TEST_P(TensorParallelGroupTest, CompressedAllReduceAgreesAndIsCounted) {
  const std::vector<std::string> prompts = RandomPrompts(8);
  const std::vector<std::vector<uint32_t>> expected = SingleWorker(prompts);

  std::vector<Worker> group;
  group.push_back(StartWorker());
  group.push_back(StartWorker());
  for (const grpc::Status& status :
       LoadGroup(group, FixtureDir(GetParam()), v1::ALL_REDUCE_COMPRESSION_INT8)) {
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  const std::vector<std::vector<uint32_t>> got = Generate(group[0], prompts, kMaxTokens);
  int64_t same = 0;
  int64_t total = 0;
  int first_same = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    // The INT8 noise may flip a near-tie to or from the end-of-sequence token, which ends one of
    // the two sequences early: the positions only the longer one has count as unequal.
    ASSERT_FALSE(got[i].empty() || expected[i].empty());
    first_same += got[i][0] == expected[i][0];
    const size_t common = std::min(got[i].size(), expected[i].size());
    for (size_t t = 0; t < common; ++t) same += got[i][t] == expected[i][t];
    total += static_cast<int64_t>(std::max(got[i].size(), expected[i].size()));
  }
  const double agreement = static_cast<double>(same) / static_cast<double>(total);
  std::printf("[ TP INT8  ] %s: %lld/%lld greedy tokens equal TP=1 (%.3f), first tokens %d/%zu\n",
              GetParam().c_str(), static_cast<long long>(same), static_cast<long long>(total),
              agreement, first_same, prompts.size());
  EXPECT_GE(agreement, 0.6);
  EXPECT_GE(first_same, 6);

  // Both ranks count their all-reduce traffic; INT8 sends well under half the FP32 bytes.
  for (Worker& rank : group) {
    const std::string page = HttpGet(rank.process->metrics_port(), "/metrics").body;
    const double raw = SampleValue(page, R"(flatfleet_allreduce_bytes_total{kind="raw"})");
    const double wire = SampleValue(page, R"(flatfleet_allreduce_bytes_total{kind="wire"})");
    const double seconds = SampleValue(page, "flatfleet_allreduce_seconds_total");
    std::printf("[ TP INT8  ] all-reduce raw %.0f, wire %.0f bytes, %.4f s\n", raw, wire, seconds);
    EXPECT_GT(raw, 0);
    EXPECT_GT(wire, 0);
    EXPECT_LT(wire, raw / 2);
    EXPECT_GT(seconds, 0);
    if (flatfleet::test_support::HasPromtool()) {
      std::string report;
      EXPECT_EQ(flatfleet::test_support::PromtoolCheckMetrics(page, &report), 0) << report;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TensorParallelGroupTest,
                         ::testing::Values("llama-tiny", "mixtral-tiny"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// A follower that goes away mid-generation fails rank 0 promptly (no hang): its RunWork stream
// ends, Health says FAILED and why, and a new LoadShard can form a new group.
TEST(TensorParallelGroupFailureTest, LosingAFollowerFailsRankZeroWithAClearMessage) {
  std::vector<Worker> group;
  group.push_back(StartWorker());
  group.push_back(StartWorker());
  for (const grpc::Status& status :
       LoadGroup(group, std::string(kBuiltinDemoModel), v1::ALL_REDUCE_COMPRESSION_INT8)) {
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  grpc::Status finished;
  std::thread generate(
      [&] { Generate(group[0], RandomPrompts(6), /*max_tokens=*/2000, &finished); });
  // Let the group run some steps before the follower goes.
  const absl::Time started = absl::Now();
  while (Health(group[0]).message().find(" 0 steps") != std::string::npos &&
         absl::Now() < started + absl::Seconds(60)) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  group[1].process.reset();
  generate.join();
  EXPECT_FALSE(finished.ok());
  const v1::HealthResponse health = Health(group[0]);
  EXPECT_EQ(health.state(), v1::WORKER_STATE_FAILED);
  EXPECT_NE(health.message().find("lost a peer"), std::string::npos) << health.message();
  std::printf("[ TP fail  ] rank 0 after losing rank 1: %s\n", health.message().c_str());

  // The failed rank reloads as a whole model again.
  std::vector<Worker> alone;
  alone.push_back(std::move(group[0]));
  for (const grpc::Status& status :
       LoadGroup(alone, std::string(kBuiltinDemoModel), v1::ALL_REDUCE_COMPRESSION_NONE)) {
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_EQ(Health(alone[0]).state(), v1::WORKER_STATE_READY);
  EXPECT_EQ(Generate(alone[0], {"hello"}, 3)[0].size(), 3u);
}

// A rank whose peer never joins gives up after the rendezvous timeout with an error naming it.
TEST(TensorParallelGroupFailureTest, MissingPeerTimesOutWithAClearError) {
  std::vector<Worker> group;
  group.push_back(StartWorker());
  group.push_back(StartWorker());
  grpc::ClientContext context;
  SetDeadline(context, 10);
  v1::OpenRendezvousRequest open;
  open.set_group_id("lonely");
  open.set_tp_size(2);
  open.set_host("127.0.0.1");
  v1::OpenRendezvousResponse opened;
  ASSERT_TRUE(group[0].stub->OpenRendezvous(&context, open, &opened).ok());
  v1::LoadShardRequest request;
  request.set_model_path(std::string(kBuiltinDemoModel));
  request.set_tp_rank(0);
  request.set_tp_size(2);
  v1::Rendezvous* rendezvous = request.mutable_rendezvous();
  rendezvous->set_group_id("lonely");
  rendezvous->add_peer_addresses(group[0].process->address());
  rendezvous->add_peer_addresses(group[1].process->address());
  rendezvous->set_store_address(opened.store_address());
  rendezvous->set_timeout_ms(1500);
  grpc::ClientContext load_context;
  SetDeadline(load_context, 60);
  v1::LoadShardResponse response;
  grpc::Status status = group[0].stub->LoadShard(&load_context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_NE(status.error_message().find("group 'lonely'"), std::string::npos)
      << status.error_message();
  EXPECT_EQ(Health(group[0]).state(), v1::WORKER_STATE_IDLE);
}

}  // namespace
}  // namespace flatfleet::engine
