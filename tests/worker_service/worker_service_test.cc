// The worker end to end over loopback gRPC: the demo model through the Generator adapter for
// results and metrics, and a scripted engine for cancellation, stream loss and draining.
#include "worker/serving/worker_service.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <regex>
#include <thread>

#include "absl/synchronization/notification.h"
#include "fake_engine.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "http_get.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/support/promtool.h"
#include "tests/worker_service/read_work_result.h"
#include "worker/generate/generator.h"
#include "worker/model/demo_model.h"
#include "worker/serving/continuous_batcher_factory.h"
#include "worker/serving/generator_engine.h"
#include "worker/serving/worker_process.h"

namespace flatfleet::engine {
namespace {

using testing::FakeEngineControl;
using testing::FakeEngineFactory;
using testing::HttpGet;

constexpr char kWorkerHealthName[] = "flatfleet.v1.WorkerService";

void SetDeadline(grpc::ClientContext& context, int seconds = 30) {
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

v1::WorkItem SubmitItem(uint64_t work_id, const std::string& prompt, uint32_t max_tokens) {
  v1::WorkItem item;
  item.set_work_id(work_id);
  item.mutable_submit()->set_prompt(prompt);
  item.mutable_submit()->mutable_sampling()->set_max_tokens(max_tokens);
  item.mutable_submit()->mutable_sampling()->set_temperature(0.0f);
  return item;
}

v1::WorkItem CancelItem(uint64_t work_id) {
  v1::WorkItem item;
  item.set_work_id(work_id);
  item.mutable_cancel();
  return item;
}

// The value of the sample `name_and_labels` (e.g. `x_total{a="b"}`) on a metrics page; -1 when
// absent.
double SampleValue(const std::string& page, const std::string& name_and_labels) {
  const std::string prefix = name_and_labels + " ";
  for (size_t at = page.find(prefix); at != std::string::npos; at = page.find(prefix, at + 1)) {
    if (at == 0 || page[at - 1] == '\n') return std::stod(page.substr(at + prefix.size()));
  }
  return -1;
}

class WorkerServiceTest : public ::testing::Test {
 protected:
  // Without `with_metrics` no HTTP server starts: stopping civetweb takes about 2 s.
  void StartWorker(EngineFactory factory, bool with_metrics = true) {
    WorkerProcessOptions options;
    if (!with_metrics) options.metrics_listen_address.clear();
    options.service.model_loader = CpuModelLoader();
    options.service.engine_factory = std::move(factory);
    options.service.poll_interval = absl::Milliseconds(10);
    auto process = WorkerProcess::Start(std::move(options));
    ASSERT_TRUE(process.ok()) << process.status();
    worker_ = *std::move(process);
    channel_ = grpc::CreateChannel(worker_->address(), grpc::InsecureChannelCredentials());
    stub_ = v1::WorkerService::NewStub(channel_);
  }

  grpc::Status LoadShard(const std::string& model_path, uint32_t tp_size = 1,
                         v1::LoadShardResponse* response = nullptr) {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::LoadShardRequest request;
    request.set_model_path(model_path);
    request.set_model_name("demo");
    request.set_tp_size(tp_size);
    v1::LoadShardResponse ignored;
    return stub_->LoadShard(&context, request, response != nullptr ? response : &ignored);
  }

  v1::HealthResponse Health() {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::HealthResponse response;
    EXPECT_TRUE(stub_->Health(&context, v1::HealthRequest(), &response).ok());
    return response;
  }

  // Sends `items`, half-closes, and collects every result by work id.
  grpc::Status RunAll(const std::vector<v1::WorkItem>& items,
                      std::map<uint64_t, v1::WorkResult>* results) {
    grpc::ClientContext context;
    SetDeadline(context, 60);
    auto stream = stub_->RunWork(&context);
    for (const v1::WorkItem& item : items) stream->Write(item);
    stream->WritesDone();
    for (v1::WorkResult result; testing::ReadWorkResult(*stream, &result);) {
      EXPECT_TRUE(results->emplace(result.work_id(), result).second)
          << "twice: " << result.work_id();
    }
    return stream->Finish();
  }

  // The standard grpc.health.v1 Check, spoken through a generic stub (no generated code for it).
  int StandardHealthStatus(const std::string& service) {
    grpc::GenericStub generic(channel_);
    // HealthCheckRequest{service = 1}; HealthCheckResponse{status = 1}: SERVING = 1.
    std::string request_bytes =
        std::string("\x0a", 1) + static_cast<char>(service.size()) + service;
    grpc::Slice slice(request_bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    grpc::ClientContext context;
    SetDeadline(context, 10);
    std::promise<grpc::Status> done;
    generic.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                      &response, [&](grpc::Status status) { done.set_value(status); });
    grpc::Status status = done.get_future().get();
    if (!status.ok()) return -static_cast<int>(status.error_code());
    std::vector<grpc::Slice> slices;
    EXPECT_TRUE(response.Dump(&slices).ok());
    std::string bytes;
    for (const grpc::Slice& s : slices)
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    return bytes.size() == 2 && bytes[0] == '\x08' ? bytes[1] : 0;  // absent field: UNKNOWN (0)
  }

  std::string MetricsPage() {
    testing::HttpReply reply = HttpGet(worker_->metrics_port(), "/metrics");
    EXPECT_EQ(reply.status, 200);
    return reply.body;
  }

  std::unique_ptr<WorkerProcess> worker_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
};

// The same checks for each engine the worker can run.
class WorkerServiceEngineTest : public WorkerServiceTest,
                                public ::testing::WithParamInterface<std::string> {
 protected:
  EngineFactory Factory() const {
    return GetParam() == "generator" ? GeneratorEngineFactory() : ContinuousBatcherFactory();
  }
};

INSTANTIATE_TEST_SUITE_P(Engines, WorkerServiceEngineTest,
                         ::testing::Values("generator", "continuous"));

TEST_P(WorkerServiceEngineTest, GreedyResultsEqualGeneratorAndMetricsCountThem) {
  StartWorker(Factory());
  EXPECT_EQ(Health().state(), v1::WORKER_STATE_IDLE);
  EXPECT_EQ(StandardHealthStatus(kWorkerHealthName), 2);  // NOT_SERVING before a model
  EXPECT_EQ(StandardHealthStatus(""), 1);

  v1::LoadShardResponse loaded;
  ASSERT_TRUE(LoadShard("builtin:demo", 1, &loaded).ok());
  EXPECT_EQ(loaded.vocab_size(), DemoModelConfig().vocab_size);
  EXPECT_EQ(loaded.max_context_tokens(), DemoModelConfig().max_position_embeddings);
  EXPECT_EQ(Health().state(), v1::WORKER_STATE_READY);
  EXPECT_EQ(StandardHealthStatus(kWorkerHealthName), 1);

  const std::vector<std::string> prompts = {"Hello", "The quick brown fox", "xyz"};
  const std::vector<uint32_t> max_tokens = {6, 4, 8};
  std::vector<v1::WorkItem> items;
  for (size_t i = 0; i < prompts.size(); ++i) {
    items.push_back(SubmitItem(100 + i, prompts[i], max_tokens[i]));
  }
  std::map<uint64_t, v1::WorkResult> results;
  ASSERT_TRUE(RunAll(items, &results).ok());
  ASSERT_EQ(results.size(), prompts.size());

  auto model = MakeDemoModel(kernels::cpu::DefaultCpuBackend()).value();
  auto tok = tokenizer::MakeByteTokenizer();
  std::vector<GenerationRequest> direct;
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerationRequest request;
    request.prompt = tok->Encode(prompts[i], true).value();
    request.params.max_tokens = max_tokens[i];
    direct.push_back(request);
  }
  auto expected = Generator(*model, tok.get()).Generate(direct).value();
  uint64_t prompt_tokens = 0;
  uint64_t completion_tokens = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const v1::WorkResult& result = results[100 + i];
    ASSERT_TRUE(result.has_response()) << result.ShortDebugString();
    const v1::Response& response = result.response();
    EXPECT_EQ(response.text(), expected[i].text);
    EXPECT_EQ(std::vector<int32_t>(response.token_ids().begin(), response.token_ids().end()),
              expected[i].tokens);
    EXPECT_EQ(response.usage().prompt_tokens(), expected[i].prompt_tokens);
    EXPECT_EQ(response.usage().completion_tokens(), expected[i].completion_tokens);
    EXPECT_EQ(response.finish_reason(), expected[i].finish_reason == FinishReason::kStop
                                            ? v1::FINISH_REASON_STOP
                                            : v1::FINISH_REASON_LENGTH);
    prompt_tokens += response.usage().prompt_tokens();
    completion_tokens += response.usage().completion_tokens();
  }

  const std::string page = MetricsPage();
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_prompt_tokens_total"), prompt_tokens) << page;
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_generation_tokens_total"), completion_tokens);
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_requests_total{outcome=\"completed\"}"), 3);
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_requests_total{outcome=\"cancelled\"}"), 0);
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_time_to_first_token_seconds_count"), 3);
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_inter_token_latency_seconds_count"), 3);
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_request_duration_seconds_count"), 3);
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_waiting_requests"), 0);
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_kv_cache_used_blocks"), 0);  // all finished
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_kv_cache_total_blocks"),
            GetParam() == "generator" ? 0 : ContinuousBatcherOptions().kv_cache_blocks);
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_kv_cache_usage_ratio"), 0);
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_request_queue_time_seconds_count"), 3);
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_request_prefill_time_seconds_count"), 3);
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_request_decode_time_seconds_count"), 3);
  if (GetParam() != "generator") {
    // The batcher tracks the phases: they add up to the requests' total time.
    const double phases = SampleValue(page, "flatfleet_worker_request_queue_time_seconds_sum") +
                          SampleValue(page, "flatfleet_worker_request_prefill_time_seconds_sum") +
                          SampleValue(page, "flatfleet_worker_request_decode_time_seconds_sum");
    EXPECT_NEAR(phases, SampleValue(page, "flatfleet_worker_request_duration_seconds_sum"),
                1e-6 * 3);
    EXPECT_GT(SampleValue(page, "flatfleet_worker_request_prefill_time_seconds_sum"), 0);
  }
  if (!flatfleet::test_support::HasPromtool()) GTEST_SKIP() << "promtool is not installed";
  std::string report;
  EXPECT_EQ(flatfleet::test_support::PromtoolCheckMetrics(page, &report), 0) << report << "\n"
                                                                             << page;
}

// stream_text: Partials before the final result, which concatenated are the final text, for
// greedy and seeded sampling and with a stop string whose bytes come in several tokens.
TEST_F(WorkerServiceTest, StreamedTextEqualsTheFinalText) {
  StartWorker(ContinuousBatcherFactory(), /*with_metrics=*/false);
  ASSERT_TRUE(LoadShard("builtin:demo").ok());
  const auto item = [](uint64_t work_id, float temperature, const std::string& stop, bool stream) {
    v1::WorkItem item = SubmitItem(work_id, "The quick brown fox", 24);
    item.mutable_submit()->mutable_sampling()->set_temperature(temperature);
    item.mutable_submit()->mutable_sampling()->set_seed(1234);
    if (!stop.empty()) item.mutable_submit()->mutable_sampling()->add_stop(stop);
    item.set_stream_text(stream);
    return item;
  };
  // Streams every item; returns the partial texts by work id and the final results.
  const auto run = [&](const std::vector<v1::WorkItem>& items,
                       std::map<uint64_t, std::vector<std::string>>* partials,
                       std::map<uint64_t, v1::WorkResult>* finals) {
    grpc::ClientContext context;
    SetDeadline(context, 60);
    auto stream = stub_->RunWork(&context);
    for (const v1::WorkItem& work : items) stream->Write(work);
    stream->WritesDone();
    for (v1::WorkResult result; testing::ReadWorkResult(*stream, &result);) {
      if (result.has_partial()) {
        EXPECT_FALSE(finals->contains(result.work_id())) << "partial after the final result";
        (*partials)[result.work_id()].push_back(result.partial().text());
      } else {
        EXPECT_TRUE(finals->emplace(result.work_id(), result).second);
      }
    }
    EXPECT_TRUE(stream->Finish().ok());
  };
  // Unstreamed first: the texts to match, and a stop string from the middle of the greedy one.
  std::map<uint64_t, std::vector<std::string>> partials;
  std::map<uint64_t, v1::WorkResult> plain;
  run({item(1, 0.0f, "", false), item(2, 0.9f, "", false)}, &partials, &plain);
  EXPECT_TRUE(partials.empty()) << "partials for a request that did not ask for them";
  ASSERT_TRUE(plain[1].has_response() && plain[2].has_response());
  const std::string greedy = plain[1].response().text();
  ASSERT_GE(greedy.size(), 12u) << greedy;
  // Two whole characters after the third (the text is UTF-8; each byte is a token).
  const auto char_end = [&](size_t i) {
    for (++i; i < greedy.size() && (static_cast<unsigned char>(greedy[i]) & 0xC0) == 0x80;) ++i;
    return i;
  };
  const size_t begin = char_end(char_end(char_end(0)));
  const std::string stop = greedy.substr(begin, char_end(char_end(begin)) - begin);
  ASSERT_GE(stop.size(), 2u);
  const size_t stop_at = greedy.find(stop);
  run({item(3, 0.0f, stop, false)}, &partials, &plain);
  ASSERT_TRUE(plain[3].has_response());
  ASSERT_EQ(plain[3].response().text(), greedy.substr(0, stop_at));

  std::map<uint64_t, v1::WorkResult> streamed;
  run({item(11, 0.0f, "", true), item(12, 0.9f, "", true), item(13, 0.0f, stop, true)}, &partials,
      &streamed);
  for (const auto& [work_id, expected] : std::map<uint64_t, uint64_t>{{11, 1}, {12, 2}, {13, 3}}) {
    SCOPED_TRACE(work_id);
    ASSERT_TRUE(streamed[work_id].has_response()) << streamed[work_id].ShortDebugString();
    const std::string& text = plain[expected].response().text();
    EXPECT_EQ(streamed[work_id].response().text(), text);
    std::string joined;
    for (const std::string& piece : partials[work_id]) joined += piece;
    // The demo model's bytes are not all valid UTF-8: a last byte that may still begin a
    // character (one U+FFFD, 3 bytes) waits for the final result, which has all the text.
    EXPECT_EQ(joined, text.substr(0, joined.size()));
    EXPECT_LE(text.size() - joined.size(), 3u);
    EXPECT_GE(partials[work_id].size(), 2u) << "not streamed";
    if (work_id == 13) {
      // Stopped by a string: everything before it was released, none of it.
      EXPECT_EQ(joined, text);
    }
  }
}

TEST_F(WorkerServiceTest, BadRequestsGetPreciseStatusCodes) {
  StartWorker(GeneratorEngineFactory());
  {
    grpc::ClientContext context;
    SetDeadline(context);
    auto stream = stub_->RunWork(&context);
    stream->WritesDone();
    v1::WorkResult ignored;
    EXPECT_FALSE(testing::ReadWorkResult(*stream, &ignored));
    grpc::Status status = stream->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_NE(status.error_message().find("LoadShard"), std::string::npos);
  }
  grpc::Status missing = LoadShard("/nonexistent/model-dir");
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(missing.error_message().find("/nonexistent/model-dir"), std::string::npos);
  grpc::Status parallel = LoadShard("builtin:demo", /*tp_size=*/2);
  // A group rank needs the group's rendezvous (tensor_parallel_service_test covers groups).
  EXPECT_EQ(parallel.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(parallel.error_message().find("rendezvous.peer_addresses"), std::string::npos);
  EXPECT_EQ(Health().state(), v1::WORKER_STATE_IDLE);  // failed loads leave it loadable

  ASSERT_TRUE(LoadShard("builtin:demo").ok());
  grpc::Status twice = LoadShard("builtin:demo");
  EXPECT_EQ(twice.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(twice.error_message().find("already loaded"), std::string::npos);

  v1::WorkItem hot = SubmitItem(1, "hi", 2);
  hot.mutable_submit()->mutable_sampling()->set_temperature(3.0f);
  v1::WorkItem empty;
  empty.set_work_id(2);
  empty.mutable_submit()->mutable_sampling()->set_max_tokens(2);
  v1::WorkItem too_long = SubmitItem(3, "hi", 1u << 20);
  v1::WorkItem no_action;
  no_action.set_work_id(4);
  std::map<uint64_t, v1::WorkResult> results;
  ASSERT_TRUE(RunAll({hot, empty, too_long, no_action, SubmitItem(5, "fine", 1)}, &results).ok());
  ASSERT_EQ(results.size(), 5u);
  for (uint64_t work_id : {1, 2, 3, 4}) {
    ASSERT_TRUE(results[work_id].has_error()) << work_id;
    EXPECT_EQ(results[work_id].error().code(), "invalid_argument") << work_id;
  }
  EXPECT_NE(results[1].error().message().find("temperature"), std::string::npos);
  EXPECT_TRUE(results[5].has_response());
  const std::string page = MetricsPage();
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_requests_total{outcome=\"rejected\"}"), 3);
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_requests_total{outcome=\"failed\"}"),
            1);  // too long
}

// A CPU worker says its groups need Gloo, refuses to open an NCCL rendezvous, and its loader
// refuses an NCCL group, each naming why (a GPU worker runs with --device cuda).
TEST_F(WorkerServiceTest, ACpuWorkerOnlyJoinsGlooGroups) {
  StartWorker(GeneratorEngineFactory(), /*with_metrics=*/false);
  EXPECT_EQ(Health().collective_backend(), v1::COLLECTIVE_BACKEND_GLOO);
  {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::OpenRendezvousRequest open;
    open.set_group_id("g");
    open.set_tp_size(2);
    open.set_backend(v1::COLLECTIVE_BACKEND_NCCL);
    v1::OpenRendezvousResponse opened;
    grpc::Status status = stub_->OpenRendezvous(&context, open, &opened);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_NE(status.error_message().find("--device cuda"), std::string::npos)
        << status.error_message();
  }
  v1::LoadShardRequest request;
  request.set_model_path("builtin:demo");
  request.set_tp_rank(0);
  request.set_tp_size(2);
  v1::Rendezvous& rendezvous = *request.mutable_rendezvous();
  rendezvous.set_backend(v1::COLLECTIVE_BACKEND_NCCL);
  rendezvous.set_nccl_unique_id(std::string(128, 'x'));
  rendezvous.add_peer_addresses("127.0.0.1:1");
  rendezvous.add_peer_addresses("127.0.0.1:2");
  rendezvous.set_store_address("127.0.0.1:3");
  absl::StatusOr<LoadedModel> loaded = CpuModelLoader()(request);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(loaded.status().message().find("only the Gloo backend"), std::string::npos)
      << loaded.status();
  EXPECT_EQ(Health().state(), v1::WORKER_STATE_IDLE);
}

TEST_F(WorkerServiceTest, CancelItemsAndDuplicateIdsOnAStream) {
  auto control = std::make_shared<FakeEngineControl>();
  StartWorker(FakeEngineFactory(control), /*with_metrics=*/false);
  ASSERT_TRUE(LoadShard("builtin:demo").ok());

  grpc::ClientContext context;
  SetDeadline(context);
  auto stream = stub_->RunWork(&context);
  ASSERT_TRUE(stream->Write(SubmitItem(1, "one", 4)));
  ASSERT_TRUE(stream->Write(SubmitItem(2, "two", 4)));
  ASSERT_TRUE(control->WaitForSubmitted(2));
  ASSERT_TRUE(stream->Write(SubmitItem(2, "again", 4)));  // id 2 is live
  v1::WorkResult result;
  ASSERT_TRUE(testing::ReadWorkResult(*stream, &result));
  EXPECT_EQ(result.work_id(), 2u);
  EXPECT_EQ(result.error().code(), "already_exists");

  ASSERT_TRUE(stream->Write(CancelItem(1)));
  ASSERT_TRUE(stream->Write(CancelItem(99)));  // unknown: ignored
  ASSERT_TRUE(testing::ReadWorkResult(*stream, &result));
  EXPECT_EQ(result.work_id(), 1u);
  EXPECT_EQ(result.error().code(), "cancelled");

  control->ReleaseAll();
  ASSERT_TRUE(testing::ReadWorkResult(*stream, &result));
  EXPECT_EQ(result.work_id(), 2u);
  ASSERT_TRUE(result.has_response());
  // The prompt went through the tokenizer: BOS + 3 bytes.
  EXPECT_EQ(result.response().text(), "prompt of 4 tokens");
  stream->WritesDone();
  EXPECT_FALSE(testing::ReadWorkResult(*stream, &result));
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(control->cancelled(), (std::set<std::string>{"1/1"}));
}

TEST_F(WorkerServiceTest, ClosingTheStreamCancelsItsRequestsOnly) {
  auto control = std::make_shared<FakeEngineControl>();
  StartWorker(FakeEngineFactory(control));
  ASSERT_TRUE(LoadShard("builtin:demo").ok());

  grpc::ClientContext survivor_context;
  SetDeadline(survivor_context);
  auto survivor = stub_->RunWork(&survivor_context);
  ASSERT_TRUE(survivor->Write(SubmitItem(7, "stay", 4)));
  ASSERT_TRUE(control->WaitForSubmitted(1));
  {
    grpc::ClientContext context;
    SetDeadline(context);
    auto stream = stub_->RunWork(&context);
    ASSERT_TRUE(stream->Write(SubmitItem(1, "a", 4)));
    ASSERT_TRUE(stream->Write(SubmitItem(2, "b", 4)));
    ASSERT_TRUE(control->WaitForSubmitted(3));
    context.TryCancel();  // the coordinator goes away
    stream->Finish().IgnoreError();
  }
  ASSERT_TRUE(control->WaitForCancelled(2));
  EXPECT_EQ(control->cancelled().size(), 2u);
  EXPECT_EQ(control->cancelled().count("1/7"), 0u);

  control->ReleaseAll();
  v1::WorkResult result;
  ASSERT_TRUE(testing::ReadWorkResult(*survivor, &result));
  EXPECT_EQ(result.work_id(), 7u);
  EXPECT_TRUE(result.has_response());
  survivor->WritesDone();
  EXPECT_TRUE(survivor->Finish().ok());
  const std::string page = MetricsPage();
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_requests_total{outcome=\"cancelled\"}"), 2);
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_requests_total{outcome=\"completed\"}"), 1);
}

TEST_F(WorkerServiceTest, DrainStopsIntakeAndFinishesRunningWork) {
  auto control = std::make_shared<FakeEngineControl>();
  StartWorker(FakeEngineFactory(control), /*with_metrics=*/false);
  ASSERT_TRUE(LoadShard("builtin:demo").ok());
  grpc::ClientContext context;
  SetDeadline(context);
  auto stream = stub_->RunWork(&context);
  ASSERT_TRUE(stream->Write(SubmitItem(1, "run", 4)));
  ASSERT_TRUE(control->WaitForSubmitted(1));

  std::promise<std::pair<grpc::Status, v1::DrainResponse>> drained;
  std::thread drainer([&] {
    grpc::ClientContext drain_context;
    SetDeadline(drain_context);
    v1::DrainResponse response;
    grpc::Status status = stub_->Drain(&drain_context, v1::DrainRequest(), &response);
    drained.set_value({status, response});
  });
  auto drained_future = drained.get_future();
  // Draining: new work is refused while the running request still finishes.
  for (int i = 0; i < 500 && Health().state() != v1::WORKER_STATE_DRAINING; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(Health().state(), v1::WORKER_STATE_DRAINING);
  EXPECT_EQ(Health().running_requests(), 1u);
  ASSERT_TRUE(stream->Write(SubmitItem(2, "late", 4)));
  v1::WorkResult result;
  ASSERT_TRUE(testing::ReadWorkResult(*stream, &result));
  EXPECT_EQ(result.work_id(), 2u);
  EXPECT_EQ(result.error().code(), "unavailable");
  {
    grpc::ClientContext late_context;
    SetDeadline(late_context);
    auto late = stub_->RunWork(&late_context);
    late->WritesDone();
    EXPECT_EQ(late->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  EXPECT_EQ(drained_future.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);

  control->ReleaseAll();
  ASSERT_TRUE(testing::ReadWorkResult(*stream, &result));
  EXPECT_EQ(result.work_id(), 1u);
  EXPECT_TRUE(result.has_response());
  ASSERT_EQ(drained_future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto [status, response] = drained_future.get();
  drainer.join();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.finished(), 1u);
  EXPECT_EQ(response.cancelled(), 0u);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(StandardHealthStatus(kWorkerHealthName), 2);
}

TEST_F(WorkerServiceTest, DrainCanCancelRunningWork) {
  auto control = std::make_shared<FakeEngineControl>();
  StartWorker(FakeEngineFactory(control), /*with_metrics=*/false);
  ASSERT_TRUE(LoadShard("builtin:demo").ok());
  grpc::ClientContext context;
  SetDeadline(context);
  auto stream = stub_->RunWork(&context);
  ASSERT_TRUE(stream->Write(SubmitItem(1, "a", 4)));
  ASSERT_TRUE(stream->Write(SubmitItem(2, "b", 4)));
  ASSERT_TRUE(control->WaitForSubmitted(2));

  grpc::ClientContext drain_context;
  SetDeadline(drain_context);
  v1::DrainRequest request;
  request.set_cancel_running(true);
  v1::DrainResponse response;
  ASSERT_TRUE(stub_->Drain(&drain_context, request, &response).ok());
  EXPECT_EQ(response.finished(), 0u);
  EXPECT_EQ(response.cancelled(), 2u);
  stream->WritesDone();
  std::set<uint64_t> cancelled;
  for (v1::WorkResult result; testing::ReadWorkResult(*stream, &result);) {
    EXPECT_EQ(result.error().code(), "cancelled");
    cancelled.insert(result.work_id());
  }
  EXPECT_EQ(cancelled, (std::set<uint64_t>{1, 2}));
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(WorkerServiceTest, ShutdownDrainsRunningWorkThenEndsOpenStreams) {
  // What SIGTERM does to `flatfleet serve worker`.
  auto control = std::make_shared<FakeEngineControl>();
  StartWorker(FakeEngineFactory(control), /*with_metrics=*/false);
  ASSERT_TRUE(LoadShard("builtin:demo").ok());
  grpc::ClientContext context;
  SetDeadline(context);
  auto stream = stub_->RunWork(&context);
  ASSERT_TRUE(stream->Write(SubmitItem(1, "run", 4)));
  ASSERT_TRUE(control->WaitForSubmitted(1));

  auto shutdown = std::async(std::launch::async, [&] {
    return worker_->Shutdown(absl::Seconds(20), absl::Milliseconds(200));
  });
  EXPECT_EQ(shutdown.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
  control->ReleaseAll();
  v1::WorkResult result;
  ASSERT_TRUE(testing::ReadWorkResult(*stream, &result));  // the running request still answers
  EXPECT_TRUE(result.has_response());
  ASSERT_EQ(shutdown.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  absl::StatusOr<v1::DrainResponse> drained = shutdown.get();
  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_EQ(drained->finished(), 1u);
  // The stream was never half-closed; the server ends it after the grace period.
  EXPECT_FALSE(testing::ReadWorkResult(*stream, &result));
  EXPECT_FALSE(stream->Finish().ok());
}

TEST_F(WorkerServiceTest, HealthzFollowsTheWorkerState) {
  StartWorker(GeneratorEngineFactory());
  testing::HttpReply reply = HttpGet(worker_->metrics_port(), "/healthz");
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "WORKER_STATE_IDLE\n");
  ASSERT_TRUE(LoadShard("builtin:demo").ok());
  EXPECT_EQ(HttpGet(worker_->metrics_port(), "/healthz").body, "WORKER_STATE_READY\n");
  auto drained = worker_->Shutdown(absl::Seconds(5), absl::Seconds(1));
  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_EQ(drained->finished(), 0u);
}

// Kubernetes readiness and startup probes ask the named health service: it must stay
// NOT_SERVING for the whole load (a 70B shard takes minutes), turn SERVING once the model is
// loaded and go back to NOT_SERVING on a drain, while the process-level "" and /healthz (the
// liveness probe) stay up throughout. The state gauge follows.
TEST_F(WorkerServiceTest, ReadinessIsServingOnlyWhileAModelIsLoaded) {
  absl::Notification loading, release;
  WorkerProcessOptions options;
  options.service.model_loader = [&,
                                  loader = CpuModelLoader()](const v1::LoadShardRequest& request) {
    loading.Notify();
    release.WaitForNotification();
    return loader(request);
  };
  options.service.engine_factory = GeneratorEngineFactory();
  options.service.poll_interval = absl::Milliseconds(10);
  auto process = WorkerProcess::Start(std::move(options));
  ASSERT_TRUE(process.ok()) << process.status();
  worker_ = *std::move(process);
  channel_ = grpc::CreateChannel(worker_->address(), grpc::InsecureChannelCredentials());
  stub_ = v1::WorkerService::NewStub(channel_);

  EXPECT_EQ(StandardHealthStatus(kWorkerHealthName), 2);  // NOT_SERVING: nothing loaded
  EXPECT_EQ(StandardHealthStatus(""), 1);
  EXPECT_EQ(SampleValue(MetricsPage(), "flatfleet_worker_state{state=\"idle\"}"), 1);

  std::future<grpc::Status> load =
      std::async(std::launch::async, [this] { return LoadShard("builtin:demo"); });
  ASSERT_TRUE(loading.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(StandardHealthStatus(kWorkerHealthName), 2);  // still NOT_SERVING while loading
  EXPECT_EQ(StandardHealthStatus(""), 1);
  testing::HttpReply alive = HttpGet(worker_->metrics_port(), "/healthz");
  EXPECT_EQ(alive.status, 200);
  EXPECT_EQ(alive.body, "WORKER_STATE_LOADING\n");
  const std::string page = MetricsPage();
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_state{state=\"loading\"}"), 1);
  EXPECT_EQ(SampleValue(page, "flatfleet_worker_state{state=\"idle\"}"), 0);

  release.Notify();
  ASSERT_TRUE(load.get().ok());
  EXPECT_EQ(StandardHealthStatus(kWorkerHealthName), 1);  // SERVING
  EXPECT_EQ(SampleValue(MetricsPage(), "flatfleet_worker_state{state=\"ready\"}"), 1);

  grpc::ClientContext drain_context;
  SetDeadline(drain_context);
  v1::DrainResponse drained;
  ASSERT_TRUE(stub_->Drain(&drain_context, v1::DrainRequest(), &drained).ok());
  EXPECT_EQ(StandardHealthStatus(kWorkerHealthName), 2);  // NOT_SERVING while draining
  EXPECT_EQ(StandardHealthStatus(""), 1);
  EXPECT_EQ(HttpGet(worker_->metrics_port(), "/healthz").status, 200);
  EXPECT_EQ(SampleValue(MetricsPage(), "flatfleet_worker_state{state=\"draining\"}"), 1);
}

}  // namespace
}  // namespace flatfleet::engine
