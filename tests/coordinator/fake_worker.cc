#include "tests/coordinator/fake_worker.h"

#include <algorithm>
#include <optional>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace flatfleet::coordinator::testing_util {
namespace {

std::string PromptOf(const v1::RequestBody& body) {
  if (body.has_messages() && body.messages().messages_size() > 0) {
    return body.messages().messages(body.messages().messages_size() - 1).content();
  }
  return body.prompt();
}

v1::WorkResult EchoAnswer(uint64_t work_id, const v1::RequestBody& body) {
  const std::string prompt = PromptOf(body);
  const uint32_t max_tokens = std::max<uint32_t>(body.sampling().max_tokens(), 1);
  v1::WorkResult result;
  result.set_work_id(work_id);
  v1::Response* response = result.mutable_response();
  response->set_text(FakeEchoText(prompt));
  const size_t tokens = std::min<size_t>(prompt.size(), max_tokens);
  for (size_t i = 0; i < tokens; ++i) {
    response->add_token_ids(static_cast<unsigned char>(prompt[i]));
  }
  response->set_finish_reason(prompt.size() > max_tokens ? v1::FINISH_REASON_LENGTH
                                                         : v1::FINISH_REASON_STOP);
  response->mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(prompt.size()));
  response->mutable_usage()->set_completion_tokens(static_cast<uint32_t>(tokens));
  response->mutable_usage()->set_total_tokens(static_cast<uint32_t>(prompt.size() + tokens));
  return result;
}

}  // namespace

std::string FakeEchoText(const std::string& prompt) { return absl::StrCat("echo:", prompt); }

FakeWorker::FakeWorker(FakeWorkerOptions options) : options_(options) {
  loaded_ = !options_.start_idle;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(64 << 20);  // Like a real worker: larger than requests.
  builder.RegisterService(this);
  server_ = builder.BuildAndStart();
  address_ = absl::StrCat("127.0.0.1:", port);
}

FakeWorker::~FakeWorker() {
  {
    absl::MutexLock lock(&mutex_);
    shutting_down_ = true;
  }
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server_->Wait();
}

int64_t FakeWorker::submits() const {
  absl::MutexLock lock(&mutex_);
  return submits_;
}
int64_t FakeWorker::answers() const {
  absl::MutexLock lock(&mutex_);
  return answers_;
}
int64_t FakeWorker::cancels() const {
  absl::MutexLock lock(&mutex_);
  return cancels_;
}
void FakeWorker::Freeze(bool frozen) {
  absl::MutexLock lock(&mutex_);
  frozen_ = frozen;
}

int64_t FakeWorker::streams_opened() const {
  absl::MutexLock lock(&mutex_);
  return streams_opened_;
}
std::vector<v1::LoadShardRequest> FakeWorker::load_requests() const {
  absl::MutexLock lock(&mutex_);
  return load_requests_;
}

grpc::Status FakeWorker::LoadShard(grpc::ServerContext* context,
                                   const v1::LoadShardRequest* request,
                                   v1::LoadShardResponse* response) {
  absl::MutexLock lock(&mutex_);
  load_requests_.push_back(*request);
  loaded_ = true;
  response->set_vocab_size(256);
  response->set_max_context_tokens(4096);
  response->set_kv_cache_tokens(65536);
  return grpc::Status::OK;
}

grpc::Status FakeWorker::Health(grpc::ServerContext* context, const v1::HealthRequest* request,
                                v1::HealthResponse* response) {
  absl::MutexLock lock(&mutex_);
  // Frozen: no answer until thawed or the caller gives up, as from a stopped process.
  while (frozen_ && !context->IsCancelled()) {
    mutex_.AwaitWithTimeout(absl::Condition(
                                +[](bool* frozen) { return !*frozen; }, &frozen_),
                            absl::Milliseconds(20));
  }
  if (frozen_) return grpc::Status(grpc::StatusCode::CANCELLED, "frozen");
  response->set_state(loaded_ ? v1::WORKER_STATE_READY : v1::WORKER_STATE_IDLE);
  response->set_collective_backend(options_.gpu ? v1::COLLECTIVE_BACKEND_NCCL
                                                : v1::COLLECTIVE_BACKEND_GLOO);
  return grpc::Status::OK;
}

grpc::Status FakeWorker::OpenRendezvous(grpc::ServerContext* context,
                                        const v1::OpenRendezvousRequest* request,
                                        v1::OpenRendezvousResponse* response) {
  if (request->backend() == v1::COLLECTIVE_BACKEND_NCCL) {
    if (!options_.gpu) return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "no NCCL");
    response->set_backend(v1::COLLECTIVE_BACKEND_NCCL);
    response->set_nccl_unique_id("fake-nccl-id:" + request->group_id());
  } else {
    response->set_backend(v1::COLLECTIVE_BACKEND_GLOO);
  }
  response->set_store_address("fake-store:" + request->group_id());
  return grpc::Status::OK;
}

grpc::Status FakeWorker::Drain(grpc::ServerContext* context, const v1::DrainRequest* request,
                               v1::DrainResponse* response) {
  return grpc::Status::OK;
}

grpc::Status FakeWorker::RunWork(grpc::ServerContext* context,
                                 grpc::ServerReaderWriter<v1::WorkResult, v1::WorkItem>* stream) {
  {
    absl::MutexLock lock(&mutex_);
    if (!loaded_) return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "no shard loaded");
    ++streams_opened_;
  }
  // Submitted and not yet answered, in arrival order; a writer thread answers them.
  struct Queued {
    uint64_t work_id;
    v1::RequestBody body;
    bool cancelled = false;
    bool partial_due = false;  // a stream_text submit whose Partial is not sent yet
  };
  absl::Mutex queue_mutex;
  std::deque<Queued> queue;
  bool reading_done = false;
  absl::CondVar queue_signal;
  bool drop_stream = false;
  absl::Time next_heartbeat = absl::InfinitePast();
  std::thread writer([&] {
    while (true) {
      bool frozen = false;
      {
        absl::MutexLock lock(&mutex_);
        if (frozen_) {
          mutex_.AwaitWithTimeout(absl::Condition(
                                      +[](bool* frozen) { return !*frozen; }, &frozen_),
                                  absl::Milliseconds(50));
          frozen = true;
        }
      }
      if (frozen) {
        absl::MutexLock queue_lock(&queue_mutex);
        if (reading_done) return;
        continue;
      }
      if (options_.heartbeat_interval > absl::ZeroDuration() && absl::Now() >= next_heartbeat) {
        v1::WorkResult heartbeat;
        {
          absl::MutexLock lock(&mutex_);
          heartbeat.mutable_heartbeat()->set_engine_steps_total(static_cast<uint64_t>(answers_));
        }
        if (!stream->Write(heartbeat)) return;
        next_heartbeat = absl::Now() + options_.heartbeat_interval;
      }
      std::optional<v1::WorkResult> partial;
      {
        absl::MutexLock lock(&queue_mutex);
        for (Queued& q : queue) {
          if (!q.partial_due) continue;
          q.partial_due = false;
          partial.emplace();
          partial->set_work_id(q.work_id);
          partial->mutable_partial()->set_text(options_.partial_text);
          break;
        }
      }
      if (partial && !stream->Write(*partial)) return;
      std::optional<Queued> next;
      {
        absl::MutexLock lock(&queue_mutex);
        auto ready = [&] {
          if (reading_done) return true;
          for (const Queued& q : queue) {
            if (q.cancelled || q.partial_due || !options_.hold_answers) return true;
          }
          return false;
        };
        if (!ready()) queue_signal.WaitWithTimeout(&queue_mutex, absl::Milliseconds(20));
        if (reading_done) return;
        for (auto it = queue.begin(); it != queue.end(); ++it) {
          if (it->cancelled || !options_.hold_answers) {
            next = std::move(*it);
            queue.erase(it);
            break;
          }
        }
      }
      if (!next) continue;
      v1::WorkResult result;
      if (next->cancelled) {
        result.set_work_id(next->work_id);
        result.mutable_error()->set_code("cancelled");
        result.mutable_error()->set_message("cancelled by the coordinator");
      } else {
        if (options_.answer_delay > absl::ZeroDuration()) absl::SleepFor(options_.answer_delay);
        result = EchoAnswer(next->work_id, next->body);
      }
      if (!stream->Write(result)) return;
      bool crash = false;
      {
        absl::MutexLock lock(&mutex_);
        ++answers_;
        crash = options_.disconnect_after_answers >= 0 && !disconnected_once_ &&
                answers_ >= options_.disconnect_after_answers;
        if (crash) disconnected_once_ = true;
      }
      if (crash) {
        // A crash: unanswered work is lost with the stream.
        absl::MutexLock queue_lock(&queue_mutex);
        drop_stream = true;
        context->TryCancel();
        return;
      }
    }
  });
  v1::WorkItem item;
  while (stream->Read(&item)) {
    absl::MutexLock lock(&queue_mutex);
    if (item.has_submit()) {
      queue.push_back(Queued{item.work_id(), item.submit(), /*cancelled=*/false,
                             item.stream_text() && !options_.partial_text.empty()});
      queue_signal.SignalAll();
      absl::MutexLock counts(&mutex_);
      ++submits_;
    } else if (item.has_cancel()) {
      {
        absl::MutexLock counts(&mutex_);
        ++cancels_;
      }
      for (Queued& q : queue) {
        if (q.work_id == item.work_id()) q.cancelled = true;
      }
      queue_signal.SignalAll();
    }
  }
  {
    absl::MutexLock lock(&queue_mutex);
    reading_done = true;
    queue_signal.SignalAll();
  }
  writer.join();
  if (drop_stream) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake worker crashed");
  return grpc::Status::OK;
}

}  // namespace flatfleet::coordinator::testing_util
