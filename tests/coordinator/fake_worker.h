// An in-process WorkerService for coordinator tests: answers each submitted request with a
// deterministic echo of its prompt, and can be told to hold answers, to drop its stream after
// a number of answers (a crash), or to start without a shard loaded.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flatfleet/v1/worker.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace flatfleet::coordinator::testing_util {

struct FakeWorkerOptions {
  bool start_idle = true;                              // Needs LoadShard before RunWork.
  absl::Duration answer_delay = absl::ZeroDuration();  // Per answer.
  bool hold_answers = false;                           // Answer only cancels.
  // Sent once as a Partial for every stream_text submit (held or not); empty sends none.
  std::string partial_text;
  int64_t disconnect_after_answers = -1;  // Drop the (first) stream after this many.
  // Heartbeats on RunWork streams, as a real worker sends; zero sends none (an older worker).
  // engine_steps_total counts answers, so a worker holding answers makes no progress.
  absl::Duration heartbeat_interval = absl::ZeroDuration();
  // A GPU worker: Health says its groups need NCCL, and OpenRendezvous answers an NCCL request
  // with a (fake) unique id.
  bool gpu = false;
};

// The answer the fake gives for a prompt; tests compare outputs with it.
std::string FakeEchoText(const std::string& prompt);

class FakeWorker final : public v1::WorkerService::Service {
 public:
  explicit FakeWorker(FakeWorkerOptions options);
  ~FakeWorker() override;

  const std::string& address() const { return address_; }

  int64_t submits() const;
  int64_t answers() const;
  int64_t cancels() const;
  int64_t streams_opened() const;
  // A frozen worker sends nothing at all (like a SIGSTOPped process) until thawed.
  void Freeze(bool frozen);
  std::vector<v1::LoadShardRequest> load_requests() const;

  grpc::Status LoadShard(grpc::ServerContext* context, const v1::LoadShardRequest* request,
                         v1::LoadShardResponse* response) override;
  grpc::Status Health(grpc::ServerContext* context, const v1::HealthRequest* request,
                      v1::HealthResponse* response) override;
  // Answers with a made-up store address ("fake-store:<group id>") that LoadShard then carries.
  grpc::Status OpenRendezvous(grpc::ServerContext* context,
                              const v1::OpenRendezvousRequest* request,
                              v1::OpenRendezvousResponse* response) override;
  grpc::Status RunWork(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<v1::WorkResult, v1::WorkItem>* stream) override;
  grpc::Status Drain(grpc::ServerContext* context, const v1::DrainRequest* request,
                     v1::DrainResponse* response) override;

 private:
  const FakeWorkerOptions options_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;

  mutable absl::Mutex mutex_;
  bool loaded_ ABSL_GUARDED_BY(mutex_) = false;
  bool disconnected_once_ ABSL_GUARDED_BY(mutex_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mutex_) = false;
  bool frozen_ ABSL_GUARDED_BY(mutex_) = false;
  int64_t submits_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t answers_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t cancels_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t streams_opened_ ABSL_GUARDED_BY(mutex_) = 0;
  std::vector<v1::LoadShardRequest> load_requests_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace flatfleet::coordinator::testing_util
