// A coordinator with fake workers, and client helpers, for the coordinator tests.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "coordinator/server/coordinator_server.h"
#include "flatfleet/v1/batch.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/coordinator/fake_worker.h"

namespace flatfleet::coordinator::testing_util {

inline constexpr char kModel[] = "demo";

inline std::string FreshDatabasePath(const std::string& name) {
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "coordinator";
  std::filesystem::create_directories(dir);
  const std::filesystem::path path = dir / absl::StrCat(name, "_", getpid(), ".db");
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path.string() + suffix);
  return path.string();
}

// "N" completion lines with custom_ids r0.. and prompts p0.. .
inline std::vector<std::string> CompletionLines(int count, int first = 0) {
  std::vector<std::string> lines;
  for (int i = first; i < first + count; ++i) {
    lines.push_back(absl::StrCat(R"({"custom_id": "r)", i, R"(", "body": {"prompt": "p)", i,
                                 R"(", "max_tokens": 8}})"));
  }
  return lines;
}

inline CoordinatorOptions TestCoordinatorOptions(const std::string& db_path,
                                                 const std::vector<FakeWorker*>& workers) {
  CoordinatorOptions options;
  options.listen_address = "127.0.0.1:0";
  options.db_path = db_path;
  options.model = ModelSpec{kModel, std::string(kBuiltinDemoModel)};
  for (FakeWorker* worker : workers) options.workers.push_back(WorkerInfo{worker->address(), 0});
  options.scheduler.in_flight_window = 16;
  options.scheduler.poll_interval = absl::Milliseconds(10);
  options.scheduler.reconnect_backoff_max = absl::Milliseconds(200);
  options.service.follow_poll_interval = absl::Milliseconds(10);
  return options;
}

class Client {
 public:
  explicit Client(const std::string& address)
      : stub_(v1::BatchService::NewStub(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))) {}

  v1::BatchService::Stub& stub() { return *stub_; }

  v1::CreateBatchResponse Submit(const std::vector<std::string>& lines, uint32_t max_attempts = 0) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::CreateBatchResponse response;
    auto writer = stub_->CreateBatch(&context, &response);
    v1::CreateBatchRequest options;
    options.mutable_options()->set_model(kModel);
    options.mutable_options()->set_max_attempts(max_attempts);
    EXPECT_TRUE(writer->Write(options));
    // Several messages, to exercise the streaming upload.
    constexpr size_t kLinesPerMessage = 100;
    for (size_t i = 0; i < lines.size(); i += kLinesPerMessage) {
      v1::CreateBatchRequest chunk;
      for (size_t j = i; j < std::min(lines.size(), i + kLinesPerMessage); ++j) {
        chunk.mutable_lines()->add_lines(lines[j]);
      }
      EXPECT_TRUE(writer->Write(chunk));
    }
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  grpc::Status Get(const std::string& id, v1::Batch* batch) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::GetBatchRequest request;
    request.set_batch_id(id);
    return stub_->GetBatch(&context, request, batch);
  }

  // Polls until the batch is in `state` (bounded); returns the last batch seen.
  v1::Batch WaitForState(const std::string& id, v1::BatchState state,
                         absl::Duration timeout = absl::Seconds(60)) {
    const absl::Time deadline = absl::Now() + timeout;
    v1::Batch batch;
    while (absl::Now() < deadline) {
      if (Get(id, &batch).ok() && batch.state() == state) return batch;
      absl::SleepFor(absl::Milliseconds(20));
    }
    ADD_FAILURE() << "batch " << id << " did not reach " << v1::BatchState_Name(state)
                  << "; last: " << batch.ShortDebugString();
    return batch;
  }

  std::vector<v1::BatchResult> Results(const std::string& id, uint64_t start = 0,
                                       bool follow = false) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::StreamResultsRequest request;
    request.set_batch_id(id);
    request.set_start_sequence(start);
    request.set_follow(follow);
    auto reader = stub_->StreamResults(&context, request);
    std::vector<v1::BatchResult> results;
    v1::BatchResult result;
    while (reader->Read(&result)) results.push_back(result);
    grpc::Status status = reader->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return results;
  }

 private:
  std::unique_ptr<v1::BatchService::Stub> stub_;
};

}  // namespace flatfleet::coordinator::testing_util
