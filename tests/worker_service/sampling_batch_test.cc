// End to end: a batch with the sampling fields (n, seed, logprobs, penalties, min_tokens,
// stop_token_ids, ignore_eos) through a coordinator and a real in-process worker running the
// builtin demo model; the output lines carry n choices with OpenAI-shaped logprobs and exact
// usage, and a second run of the same batch gives the same choices.
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/server/batch_client.h"
#include "coordinator/server/coordinator_server.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/serving/continuous_batcher_factory.h"
#include "worker/serving/model_loader.h"
#include "worker/serving/worker_process.h"

namespace flatfleet {
namespace {

using Json = nlohmann::json;

std::string FreshDatabasePath() {
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "sampling_batch";
  std::filesystem::create_directories(dir);
  const std::filesystem::path path = dir / absl::StrCat("jobs_", getpid(), ".db");
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path.string() + suffix);
  return path.string();
}

// The response bodies of one batch run, by custom_id.
std::map<std::string, Json> RunBatch(coordinator::CoordinatorServer& server,
                                     const std::vector<std::string>& lines) {
  std::map<std::string, Json> bodies;
  auto client = coordinator::BatchClient::Connect(server.address());
  EXPECT_TRUE(client.ok()) << client.status();
  if (!client.ok()) return bodies;
  v1::BatchOptions options;
  options.set_model("demo");
  auto created = (*client)->Submit(options, lines);
  EXPECT_TRUE(created.ok()) << created.status();
  if (!created.ok() || !created->has_batch()) return bodies;
  EXPECT_EQ(created->errors_size(), 0) << created->errors(0).message();
  const std::string batch_id = created->batch().id();
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  v1::Batch batch;
  do {
    absl::SleepFor(absl::Milliseconds(20));
    auto got = (*client)->Get(batch_id);
    EXPECT_TRUE(got.ok()) << got.status();
    if (got.ok()) batch = *got;
  } while (batch.state() != v1::BATCH_STATE_COMPLETED && absl::Now() < deadline);
  EXPECT_EQ(batch.state(), v1::BATCH_STATE_COMPLETED);
  EXPECT_EQ(batch.request_counts().failed(), 0u);
  auto results = server.store().ReadResults(batch_id, 0, 1000);
  EXPECT_TRUE(results.ok()) << results.status();
  if (!results.ok()) return bodies;
  for (const coordinator::StoredResult& result : *results) {
    const Json line = Json::parse(result.output_line);
    EXPECT_TRUE(line["error"].is_null()) << result.output_line;
    bodies[result.custom_id] = line["response"]["body"];
  }
  return bodies;
}

TEST(SamplingBatchTest, ChoicesLogprobsAndUsageThroughCoordinatorAndWorker) {
  engine::WorkerProcessOptions worker_options;
  worker_options.metrics_listen_address.clear();
  worker_options.service.model_loader = engine::CpuModelLoader();
  worker_options.service.engine_factory = engine::ContinuousBatcherFactory();
  worker_options.service.poll_interval = absl::Milliseconds(10);
  auto worker = engine::WorkerProcess::Start(std::move(worker_options));
  ASSERT_TRUE(worker.ok()) << worker.status();

  coordinator::CoordinatorOptions options;
  options.listen_address = "127.0.0.1:0";
  options.db_path = FreshDatabasePath();
  options.model = coordinator::ModelSpec{"demo", std::string(coordinator::kBuiltinDemoModel)};
  options.workers.push_back({(*worker)->address(), 0});
  options.scheduler.poll_interval = absl::Milliseconds(10);
  auto server = coordinator::CoordinatorServer::Start(std::move(options));
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->WaitForPlan().ok());

  const std::vector<std::string> lines = {
      R"({"custom_id": "seeded", "url": "/v1/completions", "body": {"prompt": "Once upon", )"
      R"("max_tokens": 8, "temperature": 1, "seed": 5, "n": 3, "logprobs": 2, )"
      R"("ignore_eos": true}})",
      R"({"custom_id": "greedy", "url": "/v1/completions", "body": {"prompt": "The cat", )"
      R"("max_tokens": 6, "temperature": 0, "n": 2, "ignore_eos": true}})",
      R"({"custom_id": "penalised", "url": "/v1/completions", "body": {"prompt": "abcabc", )"
      R"("max_tokens": 10, "temperature": 0, "frequency_penalty": 2, "presence_penalty": 1, )"
      R"("repetition_penalty": 1.3, "min_tokens": 10, "stop_token_ids": [97, 98, 99]}})",
  };
  const std::map<std::string, Json> first = RunBatch(**server, lines);
  ASSERT_EQ(first.size(), 3u);

  const Json& seeded = first.at("seeded");
  ASSERT_EQ(seeded["choices"].size(), 3u) << seeded.dump();
  int64_t completion_tokens = 0;
  for (size_t i = 0; i < 3; ++i) {
    const Json& choice = seeded["choices"][i];
    EXPECT_EQ(choice["index"], i);
    EXPECT_EQ(choice["token_ids"].size(), 8u);
    const Json& logprobs = choice["logprobs"];
    ASSERT_EQ(logprobs["tokens"].size(), 8u) << logprobs.dump();
    ASSERT_EQ(logprobs["token_logprobs"].size(), 8u);
    ASSERT_EQ(logprobs["top_logprobs"].size(), 8u);
    ASSERT_EQ(logprobs["text_offset"].size(), 8u);
    for (size_t k = 0; k < 8; ++k) {
      EXPECT_LE(logprobs["token_logprobs"][k].get<double>(), 0.0);
      // The 2 most likely and the sampled token (fewer when they share a text).
      EXPECT_GE(logprobs["top_logprobs"][k].size(), 1u);
      EXPECT_LE(logprobs["top_logprobs"][k].size(), 3u);
    }
    completion_tokens += static_cast<int64_t>(choice["token_ids"].size());
  }
  EXPECT_NE(seeded["choices"][0]["token_ids"], seeded["choices"][1]["token_ids"]);
  EXPECT_EQ(seeded["usage"]["prompt_tokens"].get<int64_t>() + completion_tokens,
            seeded["usage"]["total_tokens"].get<int64_t>());
  EXPECT_EQ(seeded["usage"]["completion_tokens"], completion_tokens);

  const Json& greedy = first.at("greedy");
  ASSERT_EQ(greedy["choices"].size(), 2u);
  EXPECT_EQ(greedy["choices"][0]["text"], greedy["choices"][1]["text"]);
  EXPECT_FALSE(greedy["choices"][0].contains("logprobs"));
  EXPECT_EQ(greedy["usage"]["completion_tokens"], 12);

  // min_tokens = max_tokens: the stop ids cannot end it, so all 10 tokens come, none a stop id.
  const Json& penalised = first.at("penalised");
  ASSERT_EQ(penalised["choices"].size(), 1u);
  EXPECT_EQ(penalised["choices"][0]["finish_reason"], "length");
  ASSERT_EQ(penalised["choices"][0]["token_ids"].size(), 10u);
  for (const Json& id : penalised["choices"][0]["token_ids"]) {
    EXPECT_TRUE(id != 97 && id != 98 && id != 99) << id;
  }

  // The same batch again: the seeded choices are the same tokens.
  const std::map<std::string, Json> second = RunBatch(**server, lines);
  ASSERT_EQ(second.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(second.at("seeded")["choices"][i]["token_ids"], seeded["choices"][i]["token_ids"]);
    EXPECT_EQ(second.at("seeded")["choices"][i]["logprobs"], seeded["choices"][i]["logprobs"]);
  }
  EXPECT_EQ(second.at("penalised")["choices"], penalised["choices"]);
  (*server)->Shutdown();
}

}  // namespace
}  // namespace flatfleet
