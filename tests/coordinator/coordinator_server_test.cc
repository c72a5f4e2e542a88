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
  EXPECT_NE(exposition.find("flatfleet_coordinator_requests_total{outcome=\"succeeded\"} 1000"),
            std::string::npos)
      << exposition;
}

TEST(CoordinatorServerTest, MalformedLinesGetPerLineErrorsAndTheValidLinesComplete) {
  FakeWorker worker({});
  auto server = StartCoordinator(TestCoordinatorOptions(FreshDatabasePath("malformed"), {&worker}));
  ASSERT_NE(server, nullptr);
  Client client(server->address());

  std::vector<std::string> lines = CompletionLines(10);
  lines[2] = R"({"body": {"prompt": "no id"}})";                                    // line 3
  lines[6] = R"({"custom_id": "r6", "body": {"prompt": "p6", "temperature": 9}})";  // line 7
  lines[8] = "{not json";                                                           // line 9
  v1::CreateBatchResponse rejected = client.Submit(lines);
  // The upload is all or nothing (docs/API.md): no batch, and every bad line reported.
  EXPECT_FALSE(rejected.has_batch());
  ASSERT_EQ(rejected.errors_size(), 3);
  EXPECT_EQ(rejected.errors(0).line(), 3u);
  EXPECT_EQ(rejected.errors(0).field(), "custom_id");
  EXPECT_EQ(rejected.errors(1).line(), 7u);
  EXPECT_EQ(rejected.errors(1).field(), "body.temperature");
  EXPECT_EQ(rejected.errors(2).line(), 9u);
  EXPECT_EQ(rejected.errors_omitted(), 0u);
  {
    grpc::ClientContext context;
    v1::ListBatchesResponse listed;
    ASSERT_TRUE(client.stub().ListBatches(&context, v1::ListBatchesRequest(), &listed).ok());
    EXPECT_EQ(listed.batches_size(), 0);
  }
  // Without the bad lines, the rest is accepted and completes.
  std::vector<std::string> valid;
  for (int i = 0; i < 10; ++i) {
    if (i != 2 && i != 6 && i != 8) valid.push_back(lines[i]);
  }
  v1::CreateBatchResponse accepted = client.Submit(valid);
  ASSERT_TRUE(accepted.has_batch());
  v1::Batch done = client.WaitForState(accepted.batch().id(), v1::BATCH_STATE_COMPLETED);
  EXPECT_EQ(done.request_counts().completed(), 7u);
  EXPECT_EQ(client.Results(accepted.batch().id()).size(), 7u);
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
  EXPECT_TRUE(client.Results(created.batch().id()).empty());

  // Cancelling again is a no-op.
  grpc::ClientContext again_context;
  v1::Batch again;
  EXPECT_TRUE(client.stub().CancelBatch(&again_context, cancel, &again).ok());
  EXPECT_EQ(again.state(), v1::BATCH_STATE_CANCELLED);
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

TEST(CoordinatorServerTest, ModelTooLargeForOneWorkerIsShardedOverAGroup) {
  FakeWorker rank0({}), rank1({});
  CoordinatorOptions options =
      TestCoordinatorOptions(FreshDatabasePath("tensor_parallel"), {&rank0, &rank1});
  // The demo model counts as 8 MiB; 10 MiB devices keeping 30% headroom need two ranks.
  for (WorkerInfo& worker : options.workers) worker.device_memory_bytes = 10ull << 20;
  auto server = StartCoordinator(options);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->plan().tp_size, 2u);
  ASSERT_EQ(server->plan().groups.size(), 1u);
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
