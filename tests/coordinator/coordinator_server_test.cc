// The coordinator end to end over gRPC, with in-process fake workers.
#include "coordinator/server/coordinator_server.h"

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_test_util.h"
#include "tests/coordinator/fake_worker.h"

namespace flatfleet::coordinator {
namespace {

using testing_util::Client;
using testing_util::CompletionLines;
using testing_util::FakeWorker;
using testing_util::FakeWorkerOptions;
using testing_util::FreshDatabasePath;
using testing_util::TestCoordinatorOptions;

std::unique_ptr<CoordinatorServer> StartCoordinator(const CoordinatorOptions& options) {
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server = CoordinatorServer::Start(options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

// Every request rN answered exactly once, with the fake's echo of its prompt pN.
void ExpectEachAnsweredOnce(const std::vector<v1::BatchResult>& results, int count) {
  ASSERT_EQ(results.size(), static_cast<size_t>(count));
  std::set<std::string> seen;
  for (size_t i = 0; i < results.size(); ++i) {
    const v1::BatchResult& result = results[i];
    EXPECT_EQ(result.sequence(), i);
    EXPECT_TRUE(seen.insert(result.custom_id()).second) << "twice: " << result.custom_id();
    ASSERT_TRUE(result.has_response()) << result.ShortDebugString();
    const std::string index = result.custom_id().substr(1);
    EXPECT_EQ(result.response().text(), testing_util::FakeEchoText(absl::StrCat("p", index)));
  }
  for (int i = 0; i < count; ++i) EXPECT_TRUE(seen.contains(absl::StrCat("r", i))) << i;
}

TEST(CoordinatorServerTest, ThousandRequestsCompleteWithExactCounts) {
  FakeWorker first({}), second({});
  auto server =
      StartCoordinator(TestCoordinatorOptions(FreshDatabasePath("thousand"), {&first, &second}));
  ASSERT_NE(server, nullptr);
  Client client(server->address());

  v1::CreateBatchResponse created = client.Submit(CompletionLines(1000));
  ASSERT_TRUE(created.errors().empty());
  ASSERT_FALSE(created.batch().id().empty());
  EXPECT_EQ(created.batch().request_counts().total(), 1000u);

  v1::Batch done = client.WaitForState(created.batch().id(), v1::BATCH_STATE_COMPLETED);
  EXPECT_EQ(done.request_counts().total(), 1000u);
  EXPECT_EQ(done.request_counts().completed(), 1000u);
  EXPECT_EQ(done.request_counts().failed(), 0u);
  ExpectEachAnsweredOnce(client.Results(created.batch().id()), 1000);
  // No failures, so no request went out twice; both workers took part.
  EXPECT_EQ(first.submits() + second.submits(), 1000);
  EXPECT_GT(first.submits(), 0);
  EXPECT_GT(second.submits(), 0);
  // The workers started without a shard and were told to load the demo model as tp=1 groups.
  ASSERT_EQ(first.load_requests().size(), 1u);
  EXPECT_EQ(first.load_requests()[0].model_path(), "builtin:demo");
  EXPECT_EQ(first.load_requests()[0].model_name(), "demo");
  EXPECT_EQ(first.load_requests()[0].tp_size(), 1u);
  EXPECT_EQ(first.load_requests()[0].rendezvous().peer_addresses(0), first.address());

  const std::string exposition = server->metrics().Expose();
  EXPECT_NE(exposition.find(
                "flatfleet_coordinator_requests_total{model=\"demo\",outcome=\"succeeded\"} 1000"),
            std::string::npos)
      << exposition;
}

TEST(CoordinatorServerTest, MalformedLinesBecomeFailedResultsWhileTheValidLinesComplete) {
  FakeWorker worker({});
  const std::string db = FreshDatabasePath("malformed");
  CoordinatorOptions options = TestCoordinatorOptions(db, {&worker});
  auto server = StartCoordinator(options);
  ASSERT_NE(server, nullptr);
  Client client(server->address());

  std::vector<std::string> lines = CompletionLines(10);
  lines[2] = R"({"body": {"prompt": "no id"}})";                                    // line 3
  lines[6] = R"({"custom_id": "r6", "body": {"prompt": "p6", "temperature": 9}})";  // line 7
  lines[8] = "{not json";                                                           // line 9
  v1::CreateBatchResponse created = client.Submit(lines);
  // Every bad line is reported, and the batch runs the rest.
  ASSERT_EQ(created.errors_size(), 3);
  EXPECT_EQ(created.errors(0).line(), 3u);
  EXPECT_EQ(created.errors(0).field(), "custom_id");
  EXPECT_EQ(created.errors(1).line(), 7u);
  EXPECT_EQ(created.errors(1).field(), "body.temperature");
  EXPECT_EQ(created.errors(2).line(), 9u);
  EXPECT_EQ(created.errors_omitted(), 0u);
  ASSERT_TRUE(created.has_batch());
  EXPECT_EQ(created.batch().request_counts().total(), 10u);
  EXPECT_EQ(created.batch().request_counts().invalid(), 3u);
  EXPECT_EQ(created.batch().request_counts().failed(), 3u);
  const std::string id = created.batch().id();

  v1::Batch done = client.WaitForState(id, v1::BATCH_STATE_COMPLETED);
  EXPECT_EQ(done.request_counts().completed(), 7u);
  EXPECT_EQ(done.request_counts().failed(), 3u);
  EXPECT_EQ(done.request_counts().invalid(), 3u);
  EXPECT_TRUE(done.error().empty());
  std::vector<v1::BatchResult> results = client.Results(id);
  ASSERT_EQ(results.size(), 10u);
  // The invalid lines' errors come first, in line order; custom_id is kept when usable.
  const std::vector<std::pair<std::string, std::string>> expected_errors = {
      {"", "line 3: custom_id: is required"},
      {"r6", "line 7: body.temperature: "},
      {"", "line 9: malformed JSON"}};
  for (size_t i = 0; i < expected_errors.size(); ++i) {
    ASSERT_TRUE(results[i].has_error()) << results[i].ShortDebugString();
    EXPECT_EQ(results[i].custom_id(), expected_errors[i].first);
    EXPECT_EQ(results[i].error().code(), "invalid_request");
    EXPECT_EQ(results[i].error().message().rfind(expected_errors[i].second, 0), 0u)
        << results[i].error().message();
  }
  std::set<std::string> answered;
  for (size_t i = 3; i < results.size(); ++i) {
    ASSERT_TRUE(results[i].has_response()) << results[i].ShortDebugString();
    EXPECT_TRUE(answered.insert(results[i].custom_id()).second) << results[i].custom_id();
  }
  EXPECT_EQ(answered, (std::set<std::string>{"r0", "r1", "r3", "r4", "r5", "r7", "r9"}));
  EXPECT_EQ(worker.submits(), 7);  // Invalid lines never reach a worker.

  // Stored durably: a restarted coordinator serves the same results and counts.
  server.reset();
  auto restarted = StartCoordinator(options);
  ASSERT_NE(restarted, nullptr);
  Client again(restarted->address());
  v1::Batch reread;
  ASSERT_TRUE(again.Get(id, &reread).ok());
  EXPECT_EQ(reread.request_counts().invalid(), 3u);
  std::vector<v1::BatchResult> results_again = again.Results(id);
  ASSERT_EQ(results_again.size(), results.size());
  for (size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results_again[i].SerializeAsString(), results[i].SerializeAsString()) << i;
  }
}

TEST(CoordinatorServerTest, ABatchOfOnlyInvalidLinesFailsWithTheirErrors) {
  FakeWorker worker({});
  auto server =
      StartCoordinator(TestCoordinatorOptions(FreshDatabasePath("all_invalid"), {&worker}));
  ASSERT_NE(server, nullptr);
  Client client(server->address());
  v1::CreateBatchResponse created =
      client.Submit({R"({"custom_id": "a", "body": {"prompt": "x", "max_tokens": 0}})", "[]"});
  ASSERT_TRUE(created.has_batch());
  EXPECT_EQ(created.errors_size(), 2);
  EXPECT_EQ(created.batch().state(), v1::BATCH_STATE_FAILED);
  EXPECT_EQ(created.batch().error().rfind("all 2 request lines are invalid; first: line 1: "
                                          "body.max_tokens: ",
                                          0),
            0u)
      << created.batch().error();
  EXPECT_EQ(created.batch().request_counts().failed(), 2u);
  std::vector<v1::BatchResult> results = client.Results(created.batch().id());
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].custom_id(), "a");
  EXPECT_EQ(results[1].custom_id(), "");
  EXPECT_EQ(results[1].error().message(), "line 2: must be a JSON object, got array");
  EXPECT_EQ(worker.submits(), 0);
}

TEST(CoordinatorServerTest, TooManyLinesRejectsTheWholeUpload) {
  FakeWorker worker({});
  CoordinatorOptions options =
      TestCoordinatorOptions(FreshDatabasePath("too_many_lines"), {&worker});
  options.service.input_limits.max_lines = 5;
  auto server = StartCoordinator(options);
  ASSERT_NE(server, nullptr);
  Client client(server->address());
  v1::CreateBatchResponse rejected = client.Submit(CompletionLines(8));
  EXPECT_FALSE(rejected.has_batch());
  ASSERT_EQ(rejected.errors_size(), 1);
  EXPECT_EQ(rejected.errors(0).line(), 6u);
  EXPECT_EQ(rejected.errors(0).message(), "the batch has more than 5 request lines");
  grpc::ClientContext context;
  v1::ListBatchesResponse listed;
  ASSERT_TRUE(client.stub().ListBatches(&context, v1::ListBatchesRequest(), &listed).ok());
  EXPECT_EQ(listed.batches_size(), 0);
}

// A worker that takes requests and never answers (nor disconnects) holds them only until their
// lease expires; they then run elsewhere, each answered once.
TEST(CoordinatorServerTest, StalledWorkersLeasesExpireAndItsWorkRunsElsewhere) {
  FakeWorkerOptions stalled_options;
  stalled_options.hold_answers = true;
  FakeWorker stalled(stalled_options), healthy({});
  CoordinatorOptions options =
      TestCoordinatorOptions(FreshDatabasePath("stalled"), {&stalled, &healthy});
  options.scheduler.lease_ms = 1500;
  options.scheduler.lease_sweep_interval = absl::Milliseconds(100);
  auto server = StartCoordinator(options);
  ASSERT_NE(server, nullptr);
  // Until both groups are connected, so that the stalled one surely takes some of the work.
  const absl::Time connect_deadline = absl::Now() + absl::Seconds(60);
  while (server->scheduler().connected_groups() < 2 && absl::Now() < connect_deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(server->scheduler().connected_groups(), 2);
  Client client(server->address());
  // Attempts to spare: the stalled worker may take a request more than once.
  v1::CreateBatchResponse created = client.Submit(CompletionLines(100), /*max_attempts=*/100);
  ASSERT_TRUE(created.has_batch());
  v1::Batch done =
      client.WaitForState(created.batch().id(), v1::BATCH_STATE_COMPLETED, absl::Seconds(120));
  EXPECT_EQ(done.request_counts().completed(), 100u);
  EXPECT_EQ(done.request_counts().failed(), 0u);
  ExpectEachAnsweredOnce(client.Results(created.batch().id()), 100);
  EXPECT_GT(stalled.submits(), 0);
  // Its expired work was cancelled on it, and requeued in the store.
  const absl::Time cancel_deadline = absl::Now() + absl::Seconds(30);
  while (stalled.cancels() == 0 && absl::Now() < cancel_deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_GT(stalled.cancels(), 0);
  EXPECT_NE(server->metrics().Expose().find("outcome=\"requeued\""), std::string::npos);
}

TEST(CoordinatorServerTest, LostWorkersRequestsAreRedispatchedAndAnsweredOnce) {
  FakeWorkerOptions crashing;
  crashing.disconnect_after_answers = 40;
  crashing.answer_delay = absl::Milliseconds(1);
  FakeWorkerOptions steady;
  steady.answer_delay = absl::Milliseconds(1);
  FakeWorker flaky(crashing), healthy(steady);
  auto server = StartCoordinator(
      TestCoordinatorOptions(FreshDatabasePath("lost_worker"), {&flaky, &healthy}));
  ASSERT_NE(server, nullptr);
  Client client(server->address());

  v1::CreateBatchResponse created = client.Submit(CompletionLines(500));
  ASSERT_TRUE(created.has_batch());
  v1::Batch done = client.WaitForState(created.batch().id(), v1::BATCH_STATE_COMPLETED);
  EXPECT_EQ(done.request_counts().completed(), 500u);
  EXPECT_EQ(done.request_counts().failed(), 0u);
  ExpectEachAnsweredOnce(client.Results(created.batch().id()), 500);
  // The crash lost dispatched requests, which went out again; the flaky worker came back.
  EXPECT_GT(flaky.submits() + healthy.submits(), 500);
  EXPECT_GE(flaky.streams_opened(), 2);
  EXPECT_NE(server->metrics().Expose().find("outcome=\"requeued\""), std::string::npos);
}

TEST(CoordinatorServerTest, CancelStopsInFlightWork) {
  FakeWorkerOptions holding;
  holding.hold_answers = true;
  FakeWorker worker(holding);
  CoordinatorOptions options = TestCoordinatorOptions(FreshDatabasePath("cancel"), {&worker});
  options.scheduler.in_flight_window = 8;
  auto server = StartCoordinator(options);
  ASSERT_NE(server, nullptr);
  Client client(server->address());

  v1::CreateBatchResponse created = client.Submit(CompletionLines(100));
  ASSERT_TRUE(created.has_batch());
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (worker.submits() < 8 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_EQ(worker.submits(), 8);  // The window bounds what is dispatched.

  grpc::ClientContext context;
  v1::CancelBatchRequest cancel;
  cancel.set_batch_id(created.batch().id());
  v1::Batch cancelling;
  ASSERT_TRUE(client.stub().CancelBatch(&context, cancel, &cancelling).ok());
  EXPECT_EQ(cancelling.state(), v1::BATCH_STATE_CANCELLING);

  v1::Batch cancelled = client.WaitForState(created.batch().id(), v1::BATCH_STATE_CANCELLED);
  EXPECT_EQ(worker.cancels(), 8);
  EXPECT_EQ(cancelled.request_counts().completed(), 0u);
  EXPECT_EQ(cancelled.request_counts().failed(), 0u);
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(worker.submits(), 8);  // Nothing more was sent.
  EXPECT_EQ(cancelled.request_counts().cancelled(), 100u);
  // Every custom_id still ends with exactly one line: a batch_cancelled error.
  const std::vector<v1::BatchResult> results = client.Results(created.batch().id());
  ASSERT_EQ(results.size(), 100u);
  std::set<std::string> ids;
  for (const v1::BatchResult& result : results) {
    EXPECT_TRUE(ids.insert(result.custom_id()).second) << result.custom_id();
    EXPECT_EQ(result.error().code(), "batch_cancelled") << result.ShortDebugString();
  }

  // Cancelling again is a no-op.
  grpc::ClientContext again_context;
  v1::Batch again;
  EXPECT_TRUE(client.stub().CancelBatch(&again_context, cancel, &again).ok());
  EXPECT_EQ(again.state(), v1::BATCH_STATE_CANCELLED);
}

// A streaming caller that refuses more text (its HTTP client disconnected) cancels the
// request: Generate returns Cancelled and the worker receives the cancel.
TEST(CoordinatorServerTest, AStreamingCallerThatRefusesTextCancelsTheRequest) {
  FakeWorkerOptions holding;
  holding.hold_answers = true;  // the request would never finish by itself
  holding.partial_text = "first piece";
  FakeWorker worker(holding);
  auto server =
      StartCoordinator(TestCoordinatorOptions(FreshDatabasePath("stream_refused"), {&worker}));
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(server->WaitForPlan(absl::Seconds(20)).ok());
  v1::RequestBody body;
  body.set_prompt("hello");
  body.mutable_sampling()->set_max_tokens(3);
  std::vector<std::string> texts;
  absl::StatusOr<v1::Response> response;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  do {  // the group connects asynchronously
    response = server->scheduler().Generate(body, absl::Seconds(20), [&](const std::string& text) {
      texts.push_back(text);
      return false;
    });
    if (!absl::IsUnavailable(response.status())) break;
    absl::SleepFor(absl::Milliseconds(50));
  } while (absl::Now() < deadline);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kCancelled) << response.status();
  EXPECT_EQ(texts, std::vector<std::string>{"first piece"});
  // The fake worker counts a cancel when it reads it and an answer after it has written it, so
  // wait for both: the cancel's answer may still be on its way when the cancel is counted.
  while ((worker.cancels() < 1 || worker.answers() < 1) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(worker.cancels(), 1);
  EXPECT_EQ(worker.submits(), 1);
  EXPECT_EQ(worker.answers(), 1);  // only the cancel's answer
  EXPECT_NE(server->metrics().Expose().find(R"(outcome="cancelled"} 1)"), std::string::npos)
      << server->metrics().Expose();
}

TEST(CoordinatorServerTest, StreamResultsResumesFromAnOffsetAndFollows) {
  FakeWorkerOptions slow;
  slow.answer_delay = absl::Milliseconds(5);
  FakeWorker worker(slow);
  auto server = StartCoordinator(TestCoordinatorOptions(FreshDatabasePath("stream"), {&worker}));
  ASSERT_NE(server, nullptr);
  Client client(server->address());

  v1::CreateBatchResponse created = client.Submit(CompletionLines(60));
  ASSERT_TRUE(created.has_batch());
  const std::string id = created.batch().id();
  // Following from the start returns everything, and ends by itself when the batch completes.
  std::vector<v1::BatchResult> followed = client.Results(id, 0, /*follow=*/true);
  ExpectEachAnsweredOnce(followed, 60);
  v1::Batch batch;
  ASSERT_TRUE(client.Get(id, &batch).ok());
  EXPECT_EQ(batch.state(), v1::BATCH_STATE_COMPLETED);

  std::vector<v1::BatchResult> resumed = client.Results(id, 45);
  ASSERT_EQ(resumed.size(), 15u);
  for (size_t i = 0; i < resumed.size(); ++i) {
    EXPECT_EQ(resumed[i].sequence(), 45 + i);
    EXPECT_EQ(resumed[i].custom_id(), followed[45 + i].custom_id());
    EXPECT_EQ(resumed[i].response().text(), followed[45 + i].response().text());
  }
  EXPECT_TRUE(client.Results(id, 60).empty());

  // A completed batch cannot be cancelled.
  grpc::ClientContext cancel_context;
  v1::CancelBatchRequest cancel;
  cancel.set_batch_id(id);
  v1::Batch unchanged;
  EXPECT_EQ(client.stub().CancelBatch(&cancel_context, cancel, &unchanged).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST(CoordinatorServerTest, RestartResumesTheJobWithEarlierResultsIntact) {
  FakeWorkerOptions slow;
  slow.answer_delay = absl::Milliseconds(10);
  FakeWorker worker(slow);
  const std::string db = FreshDatabasePath("restart");
  CoordinatorOptions options = TestCoordinatorOptions(db, {&worker});
  options.scheduler.in_flight_window = 4;
  auto server = StartCoordinator(options);
  ASSERT_NE(server, nullptr);
  std::string id;
  std::vector<v1::BatchResult> before;
  {
    Client client(server->address());
    v1::CreateBatchResponse created = client.Submit(CompletionLines(200));
    ASSERT_TRUE(created.has_batch());
    id = created.batch().id();
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    v1::Batch batch;
    while (absl::Now() < deadline) {
      ASSERT_TRUE(client.Get(id, &batch).ok());
      if (batch.request_counts().completed() >= 30) break;
      absl::SleepFor(absl::Milliseconds(10));
    }
    ASSERT_GE(batch.request_counts().completed(), 30u);
    before = client.Results(id);
  }
  server.reset();  // Shut down mid-job.
  ASSERT_LT(before.size(), 200u);

  auto restarted = StartCoordinator(options);
  ASSERT_NE(restarted, nullptr);
  Client client(restarted->address());
  v1::Batch done = client.WaitForState(id, v1::BATCH_STATE_COMPLETED);
  EXPECT_EQ(done.request_counts().completed(), 200u);
  std::vector<v1::BatchResult> after = client.Results(id);
  ExpectEachAnsweredOnce(after, 200);
  ASSERT_GE(after.size(), before.size());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(after[i].custom_id(), before[i].custom_id());
    EXPECT_EQ(after[i].response().text(), before[i].response().text());
  }
}

// Device memory in which a rank of the demo model (planned as on a GPU worker: memory configured,
// kind unknown) fits at tp=2 but not at tp=1: halfway between the two needs.
uint64_t DemoNeedsTwoRanks() {
  absl::StatusOr<quant::CheckpointShapes> shapes =
      ReadModelShapes(ModelSpec{"demo", std::string(kBuiltinDemoModel)});
  EXPECT_TRUE(shapes.ok()) << shapes.status();
  RankMemoryNeed need = ModelRankNeed(*std::move(shapes), quant::RankMemoryOptions());
  const uint64_t one = need(1, WorkerDevice::kGpu)->bytes;
  const uint64_t two = need(2, WorkerDevice::kGpu)->bytes;
  EXPECT_LT(two, one);
  return static_cast<uint64_t>(static_cast<double>(one + two) / 2 /
                               PlannerOptions().device_memory_fraction);
}

TEST(CoordinatorServerTest, AModelThatFitsNoGroupIsRefusedWithTheNumbers) {
  FakeWorker rank0({}), rank1({});
  CoordinatorOptions options =
      TestCoordinatorOptions(FreshDatabasePath("fits_nothing"), {&rank0, &rank1});
  for (WorkerInfo& worker : options.workers) worker.device_memory_bytes = 64ull << 20;
  auto server = StartCoordinator(options);
  ASSERT_NE(server, nullptr);
  absl::StatusOr<ClusterPlan> plan = server->WaitForPlan();
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted);
  for (const FakeWorker* worker : {&rank0, &rank1}) {
    EXPECT_NE(plan.status().message().find(
                  absl::StrCat(worker->address(), " (GPU) offers 60.4 MB (90% of 67.1 MB)")),
              std::string::npos)
        << plan.status();
  }
  EXPECT_NE(plan.status().message().find("tp=1: each rank needs 1.11 GB = "), std::string::npos)
      << plan.status();
  EXPECT_NE(server->NotReadyReason().find("cannot plan worker groups"), std::string::npos);
}

TEST(CoordinatorServerTest, ModelTooLargeForOneWorkerIsShardedOverAGroup) {
  FakeWorker rank0({}), rank1({});
  CoordinatorOptions options =
      TestCoordinatorOptions(FreshDatabasePath("tensor_parallel"), {&rank0, &rank1});
  // Devices where a rank of the demo model fits at tp=2 but not at tp=1.
  for (WorkerInfo& worker : options.workers) worker.device_memory_bytes = DemoNeedsTwoRanks();
  auto server = StartCoordinator(options);
  ASSERT_NE(server, nullptr);
  absl::StatusOr<ClusterPlan> plan = server->WaitForPlan();
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->tp_size, 2u);
  ASSERT_EQ(plan->groups.size(), 1u);
  Client client(server->address());
  v1::CreateBatchResponse created = client.Submit(CompletionLines(20));
  ASSERT_TRUE(created.has_batch());
  client.WaitForState(created.batch().id(), v1::BATCH_STATE_COMPLETED);
  ExpectEachAnsweredOnce(client.Results(created.batch().id()), 20);

  // Both ranks loaded their shard of one group with the same rendezvous; only rank 0 serves.
  for (const FakeWorker* worker : {&rank0, &rank1}) {
    ASSERT_EQ(worker->load_requests().size(), 1u);
    const v1::LoadShardRequest load = worker->load_requests()[0];
    EXPECT_EQ(load.tp_size(), 2u);
    EXPECT_EQ(load.tp_rank(), worker == &rank0 ? 0u : 1u);
    EXPECT_EQ(load.rendezvous().group_id(), "group-0");
    ASSERT_EQ(load.rendezvous().peer_addresses_size(), 2);
    EXPECT_EQ(load.rendezvous().peer_addresses(0), rank0.address());
    EXPECT_EQ(load.rendezvous().peer_addresses(1), rank1.address());
    // Rank 0's OpenRendezvous answer reaches every rank; compression is on by default.
    EXPECT_EQ(load.rendezvous().store_address(), "fake-store:group-0");
    EXPECT_EQ(load.rendezvous().all_reduce_compression(), v1::ALL_REDUCE_COMPRESSION_INT8);
    EXPECT_GT(load.rendezvous().timeout_ms(), 0u);
  }
  EXPECT_EQ(rank0.submits(), 20);
  EXPECT_EQ(rank1.submits(), 0);
}

// GPU workers (Health says NCCL) form an NCCL group: rank 0 is asked for an NCCL rendezvous and
// its unique id reaches every rank's LoadShard with the Gloo store for the host messages.
TEST(CoordinatorServerTest, AGroupOfGpuWorkersRendezvousesOverNccl) {
  FakeWorker rank0({.gpu = true}), rank1({.gpu = true});
  CoordinatorOptions options =
      TestCoordinatorOptions(FreshDatabasePath("tensor_parallel_nccl"), {&rank0, &rank1});
  for (WorkerInfo& worker : options.workers) worker.device_memory_bytes = DemoNeedsTwoRanks();
  auto server = StartCoordinator(options);
  ASSERT_NE(server, nullptr);
  Client client(server->address());
  v1::CreateBatchResponse created = client.Submit(CompletionLines(4));
  ASSERT_TRUE(created.has_batch());
  client.WaitForState(created.batch().id(), v1::BATCH_STATE_COMPLETED);
  ExpectEachAnsweredOnce(client.Results(created.batch().id()), 4);
  for (const FakeWorker* worker : {&rank0, &rank1}) {
    ASSERT_EQ(worker->load_requests().size(), 1u);
    const v1::Rendezvous rendezvous = worker->load_requests()[0].rendezvous();  // a copy
    EXPECT_EQ(rendezvous.backend(), v1::COLLECTIVE_BACKEND_NCCL);
    EXPECT_EQ(rendezvous.nccl_unique_id(), "fake-nccl-id:group-0");
    EXPECT_EQ(rendezvous.store_address(), "fake-store:group-0");
  }
}

// A group mixing a GPU and a CPU worker is never loaded (neither backend serves both ranks).
TEST(CoordinatorServerTest, AGroupMixingGpuAndCpuWorkersIsNotLoaded) {
  FakeWorker rank0({.gpu = true}), rank1({});
  CoordinatorOptions options =
      TestCoordinatorOptions(FreshDatabasePath("tensor_parallel_mixed"), {&rank0, &rank1});
  for (WorkerInfo& worker : options.workers) worker.device_memory_bytes = DemoNeedsTwoRanks();
  auto server = StartCoordinator(options);
  ASSERT_NE(server, nullptr);
  absl::StatusOr<ClusterPlan> plan = server->WaitForPlan();
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->tp_size, 2u);
  absl::SleepFor(absl::Milliseconds(500));  // several load attempts
  EXPECT_TRUE(rank0.load_requests().empty());
  EXPECT_TRUE(rank1.load_requests().empty());
}

TEST(CoordinatorServerTest, GenerateIsRoutedToAWorker) {
  FakeWorker worker({});
  auto server = StartCoordinator(TestCoordinatorOptions(FreshDatabasePath("generate"), {&worker}));
  ASSERT_NE(server, nullptr);
  Client client(server->address());
  v1::GenerateRequest request;
  request.set_model("demo");
  request.mutable_body()->set_prompt("hello");
  request.mutable_body()->mutable_sampling()->set_max_tokens(3);
  // The group connects asynchronously; retry briefly while it is unavailable.
  grpc::Status status;
  v1::GenerateResponse response;
  for (int attempt = 0; attempt < 100; ++attempt) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    status = client.stub().Generate(&context, request, &response);
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.response().text(), "echo:hello");
  EXPECT_EQ(response.response().finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(response.response().token_ids_size(), 3);

  grpc::ClientContext wrong_context;
  request.set_model("other");
  EXPECT_EQ(client.stub().Generate(&wrong_context, request, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(CoordinatorServerTest, InputPathIsConfinedToInputDirectories) {
  FakeWorker worker({});
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / absl::StrCat("inputs_", getpid());
  std::filesystem::create_directories(dir);
  {
    std::ofstream file(dir / "batch.jsonl");
    for (const std::string& line : CompletionLines(5)) file << line << "\n";
  }
  CoordinatorOptions options = TestCoordinatorOptions(FreshDatabasePath("input_dir"), {&worker});
  options.service.input_dirs = {dir.string()};
  auto server = StartCoordinator(options);
  ASSERT_NE(server, nullptr);
  Client client(server->address());
  auto create_from = [&](const std::string& path, v1::CreateBatchResponse* response) {
    grpc::ClientContext context;
    auto writer = client.stub().CreateBatch(&context, response);
    v1::CreateBatchRequest first;
    first.mutable_options()->set_model("demo");
    first.mutable_options()->set_input_path(path);
    writer->Write(first);
    writer->WritesDone();
    return writer->Finish();
  };
  v1::CreateBatchResponse response;
  ASSERT_TRUE(create_from((dir / "batch.jsonl").string(), &response).ok());
  EXPECT_EQ(response.batch().request_counts().total(), 5u);
  EXPECT_EQ(create_from((dir / ".." / "elsewhere.jsonl").string(), &response).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(create_from("/etc/passwd", &response).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

}  // namespace
}  // namespace flatfleet::coordinator
