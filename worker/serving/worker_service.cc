#include "worker/serving/worker_service.h"

#include <unistd.h>

#include <deque>
#include <optional>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "worker/serving/partial_text_releaser.h"
#include "worker/serving/shard_chat_template.h"
#include "worker/serving/tensor_parallel_leader.h"
#if FLATFLEET_HAVE_CUDA
#include "worker/collectives/nccl_group.h"
#endif

namespace flatfleet::engine {
namespace {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

v1::WorkResult ErrorResult(uint64_t work_id, const absl::Status& status) {
  v1::WorkResult result;
  result.set_work_id(work_id);
  *result.mutable_error() = ToError(status);
  return result;
}

const char* StateName(v1::WorkerState state) {
  switch (state) {
    case v1::WORKER_STATE_IDLE:
      return "idle";
    case v1::WORKER_STATE_LOADING:
      return "loading";
    case v1::WORKER_STATE_READY:
      return "ready";
    case v1::WORKER_STATE_DRAINING:
      return "draining";
    case v1::WORKER_STATE_FAILED:
      return "failed";
    default:
      return "unspecified";
  }
}

// Physical RAM: a CPU worker's "device" memory for the planner.
void FillHostMemory(v1::HealthResponse& response) {
  const long page = sysconf(_SC_PAGE_SIZE);
  const long total = sysconf(_SC_PHYS_PAGES);
  const long available = sysconf(_SC_AVPHYS_PAGES);
  if (page > 0 && total > 0) response.set_device_memory_bytes_total(uint64_t(total) * page);
  if (page > 0 && available > 0) response.set_device_memory_bytes_free(uint64_t(available) * page);
}

// The model's chat template, or why chat requests will be refused. A template that does not
// load leaves completions working: only chat requests fail, with the reason.
ChatRendering ChatRenderingFor(const v1::LoadShardRequest& request) {
  absl::StatusOr<std::shared_ptr<const chat_template::ChatTemplate>> loaded =
      LoadShardChatTemplate(request);
  if (!loaded.ok()) {
    return ChatRendering{
        nullptr, absl::FailedPreconditionError(absl::StrCat(
                     "the model's chat template cannot be used: ", loaded.status().message()))};
  }
  if (*loaded == nullptr) {
    return ChatRendering{
        nullptr,
        absl::FailedPreconditionError(absl::StrCat(
            "model '", request.model_name(), "' (", request.model_path(),
            ") has no chat template (no chat_template.jinja, no chat_template in "
            "tokenizer_config.json): send /v1/completions requests with a prompt, or start "
            "the coordinator with --chat-template FILE"))};
  }
  return ChatRendering{*std::move(loaded), absl::OkStatus()};
}

}  // namespace

// The state of one RunWork call: its live work ids and the results waiting to be written.
// Engine callbacks may outlive the call; once abandoned, their results are dropped.
class WorkerServiceImpl::WorkStream {
 public:
  explicit WorkStream(uint64_t stream_id) : stream_id_(stream_id) {}

  std::string EngineId(uint64_t work_id) const { return absl::StrCat(stream_id_, "/", work_id); }

  // Marks `work_id` live; false when it already is.
  bool Begin(uint64_t work_id) {
    absl::MutexLock lock(&mutex_);
    return live_.insert(work_id).second;
  }
  bool IsLive(uint64_t work_id) const {
    absl::MutexLock lock(&mutex_);
    return live_.contains(work_id);
  }
  size_t LiveCount() const {
    absl::MutexLock lock(&mutex_);
    return live_.size();
  }
  // Queues the result of a live item, which stops being live.
  void Finish(v1::WorkResult result) {
    absl::MutexLock lock(&mutex_);
    live_.erase(result.work_id());
    if (!abandoned_) results_.push_back(std::move(result));
  }
  // Queues text released for a live item; its final result follows.
  void Partial(uint64_t work_id, std::string text) {
    absl::MutexLock lock(&mutex_);
    if (abandoned_ || !live_.contains(work_id)) return;
    v1::WorkResult result;
    result.set_work_id(work_id);
    result.mutable_partial()->set_text(std::move(text));
    results_.push_back(std::move(result));
  }
  // Queues the answer to an item that never went live (rejected before reaching the engine).
  void Reject(v1::WorkResult result) {
    absl::MutexLock lock(&mutex_);
    if (!abandoned_) results_.push_back(std::move(result));
  }
  void CloseInput() {
    absl::MutexLock lock(&mutex_);
    input_closed_ = true;
  }
  // Drops future results; returns the items still live.
  std::vector<uint64_t> Abandon() {
    absl::MutexLock lock(&mutex_);
    abandoned_ = true;
    results_.clear();
    return std::vector<uint64_t>(live_.begin(), live_.end());
  }
  // Waits up to `timeout` for results. `*done` says the stream has nothing more to send: its
  // input is closed, nothing is live and every result was taken.
  std::deque<v1::WorkResult> Take(absl::Duration timeout, bool* done) {
    absl::MutexLock lock(&mutex_);
    auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mutex_) {
      return !results_.empty() || (input_closed_ && live_.empty());
    };
    mutex_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    std::deque<v1::WorkResult> taken;
    taken.swap(results_);
    *done = input_closed_ && live_.empty();
    return taken;
  }

 private:
  const uint64_t stream_id_;
  mutable absl::Mutex mutex_;
  std::unordered_set<uint64_t> live_ ABSL_GUARDED_BY(mutex_);
  std::deque<v1::WorkResult> results_ ABSL_GUARDED_BY(mutex_);
  bool input_closed_ ABSL_GUARDED_BY(mutex_) = false;
  bool abandoned_ ABSL_GUARDED_BY(mutex_) = false;
};

WorkerServiceImpl::WorkerServiceImpl(WorkerServiceOptions options, WorkerMetrics& metrics)
    : options_(std::move(options)), metrics_(metrics) {}

WorkerServiceImpl::~WorkerServiceImpl() {
  std::shared_ptr<EngineDriver> driver;
  std::unique_ptr<TensorParallelFollower> follower;
  {
    absl::MutexLock lock(&mutex_);
    driver = std::move(driver_);
    follower = std::move(follower_);
  }
  // Joins the engine thread (its last callbacks still use this object) before the model goes;
  // rank 0's engine tells its followers to stop on the way.
  driver.reset();
  follower.reset();
}

void WorkerServiceImpl::TearDownModel() {
  std::shared_ptr<EngineDriver> driver;
  std::unique_ptr<TensorParallelFollower> follower;
  std::unique_ptr<LoadedModel> model;
  {
    absl::MutexLock lock(&mutex_);
    driver = std::move(driver_);
    follower = std::move(follower_);
    model = std::move(model_);
    chat_rendering_ = ChatRendering{};
  }
  // Outside the lock: their threads call back into this object while they end.
  driver.reset();
  follower.reset();
  model.reset();
  group_failed_ = false;
}

void WorkerServiceImpl::OnGroupFailure(const absl::Status& status) {
  group_failed_ = true;
  absl::MutexLock lock(&mutex_);
  std::fprintf(stderr, "worker: %s failed: %s\n", group_description_.c_str(),
               std::string(status.message()).c_str());
  if (state_ != v1::WORKER_STATE_FAILED) {
    SetState(v1::WORKER_STATE_FAILED,
             absl::StrCat(group_description_, " failed: ", status.message()));
  }
}

void WorkerServiceImpl::OnFollowerEnd(const absl::Status& status) {
  if (!status.ok()) return OnGroupFailure(status);
  absl::MutexLock lock(&mutex_);
  group_ended_ = true;
  SetState(v1::WORKER_STATE_DRAINING,
           absl::StrCat(group_description_, ": rank 0 stopped the group; LoadShard may join ",
                        "a new one"));
}

absl::StatusOr<v1::OpenRendezvousResponse> WorkerServiceImpl::Open(
    const v1::OpenRendezvousRequest& request) {
  const bool nccl = request.backend() == v1::COLLECTIVE_BACKEND_NCCL;
  if (nccl && options_.device_backend == nullptr) {
    return absl::FailedPreconditionError(
        "backend NCCL: this CPU worker has only the Gloo backend (GPU workers run with "
        "--device cuda)");
  }
#if !FLATFLEET_HAVE_CUDA
  if (nccl) {
    return absl::UnimplementedError("backend NCCL: this worker was built without CUDA");
  }
#endif
  if (request.tp_size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrFormat("tp_size %d: a rendezvous is for groups of 2 or more", request.tp_size()));
  }
  absl::StatusOr<std::string> host =
      RendezvousHost(request.host().empty() ? std::string("127.0.0.1") : request.host());
  if (!host.ok()) return host.status();
  absl::MutexLock lock(&mutex_);
  if (state_ != v1::WORKER_STATE_IDLE && state_ != v1::WORKER_STATE_FAILED && !group_ended_) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker is ", StateName(state_), " ('", model_path_,
                     "'); only an idle worker opens a rendezvous for a new group"));
  }
  rendezvous_store_.reset();  // a previous group's
  absl::StatusOr<std::unique_ptr<collectives::TcpStoreServer>> store =
      collectives::TcpStoreServer::Start(*host, 0);
  if (!store.ok()) {
    return absl::Status(
        store.status().code(),
        absl::StrCat("cannot host the rendezvous store for group '", request.group_id(), "' on ",
                     *host, ": ", store.status().message()));
  }
  v1::OpenRendezvousResponse response;
#if FLATFLEET_HAVE_CUDA
  if (nccl) {
    // The group's host messages still meet at the Gloo store; the model's device collectives
    // join NCCL with this id (every rank's LoadShard gets it from the coordinator).
    absl::StatusOr<std::string> id = collectives::NewNcclUniqueId();
    if (!id.ok()) {
      return absl::Status(id.status().code(),
                          absl::StrCat("cannot create the NCCL unique id for group '",
                                       request.group_id(), "': ", id.status().message()));
    }
    response.set_nccl_unique_id(*std::move(id));
  }
#endif
  rendezvous_store_ = *std::move(store);
  response.set_backend(nccl ? v1::COLLECTIVE_BACKEND_NCCL : v1::COLLECTIVE_BACKEND_GLOO);
  response.set_store_address(absl::StrCat(*host, ":", rendezvous_store_->port()));
  return response;
}

grpc::Status WorkerServiceImpl::OpenRendezvous(grpc::ServerContext* context,
                                               const v1::OpenRendezvousRequest* request,
                                               v1::OpenRendezvousResponse* response) {
  absl::StatusOr<v1::OpenRendezvousResponse> opened = Open(*request);
  if (!opened.ok()) return ToGrpcStatus(opened.status());
  *response = *std::move(opened);
  return grpc::Status::OK;
}

absl::Status WorkerServiceImpl::StartGroupRank(const v1::LoadShardRequest& request) {
  const LlamaModel* model = model_->model.get();
  collectives::FailureTrackingCommunicator& communicator = *model_->communicator;
  auto record_traffic = [this, model] {
    metrics_.RecordAllReduce(model->tensor_parallel_stats().layer_all_reduce);
  };
  if (model_->tp_rank > 0) {
    absl::StatusOr<std::unique_ptr<PagedKvCache>> cache =
        CreateBatcherKvCache(*model, options_.group_batcher_options);
    if (!cache.ok()) return cache.status();
    follower_ = std::make_unique<TensorParallelFollower>(
        *model, communicator, *std::move(cache), record_traffic,
        [this](const absl::Status& status) { OnFollowerEnd(status); });
    return absl::OkStatus();
  }
  absl::StatusOr<std::unique_ptr<ContinuousBatcher>> batcher =
      ContinuousBatcher::Create(*model, model_->tokenizer.get(), options_.group_batcher_options);
  if (!batcher.ok()) return batcher.status();
  auto leader = std::make_unique<TensorParallelLeader>(
      *std::move(batcher), communicator, options_.group_heartbeat_interval,
      [this](const absl::Status& status) { OnGroupFailure(status); });
  driver_ = std::make_shared<EngineDriver>(std::move(leader),
                                           [this, record_traffic](const EngineStats& stats) {
                                             metrics_.RecordEngineStats(stats);
                                             record_traffic();
                                           });
  return absl::OkStatus();
}

void WorkerServiceImpl::SetState(v1::WorkerState state, std::string message) {
  state_ = state;
  state_message_ = std::move(message);
  if (options_.on_state_change) options_.on_state_change(state);
}

v1::WorkerState WorkerServiceImpl::state() const {
  absl::MutexLock lock(&mutex_);
  return state_;
}

absl::Status WorkerServiceImpl::Load(const v1::LoadShardRequest& request,
                                     v1::LoadShardResponse* response) {
  bool replace_model = false;
  {
    absl::MutexLock lock(&mutex_);
    replace_model = state_ == v1::WORKER_STATE_FAILED || group_ended_;
  }
  // A failed (or stopped) group's rank starts over with a new group.
  if (replace_model) TearDownModel();
  {
    absl::MutexLock lock(&mutex_);
    if (replace_model) {
      group_ended_ = false;
      SetState(v1::WORKER_STATE_IDLE, "the previous group's model was released");
    }
    switch (state_) {
      case v1::WORKER_STATE_LOADING:
        return absl::FailedPreconditionError(
            absl::StrCat("a model is already loading ('", model_path_, "')"));
      case v1::WORKER_STATE_READY:
        return absl::FailedPreconditionError(
            absl::StrCat("a model is already loaded ('", model_path_,
                         "'); a worker loads one model per process"));
      case v1::WORKER_STATE_DRAINING:
        return absl::FailedPreconditionError("the worker is draining");
      default:
        break;
    }
    model_path_ = request.model_path();
    group_description_ = request.tp_size() > 1
                             ? absl::StrFormat("rank %d/%d of group '%s'", request.tp_rank(),
                                               request.tp_size(), request.rendezvous().group_id())
                             : std::string("single-rank worker");
    SetState(v1::WORKER_STATE_LOADING,
             absl::StrCat("loading '", request.model_path(), "' as ", group_description_));
  }

  // Loading (and joining the group's peers) takes long; Health keeps answering meanwhile.
  absl::StatusOr<LoadedModel> loaded = options_.model_loader(request);
  ChatRendering chat = ChatRenderingFor(request);
  const bool grouped = loaded.ok() && loaded->tp_size > 1;
  absl::StatusOr<std::unique_ptr<InferenceEngine>> engine =
      !loaded.ok() ? absl::StatusOr<std::unique_ptr<InferenceEngine>>(loaded.status())
      : grouped    ? absl::StatusOr<std::unique_ptr<InferenceEngine>>(nullptr)
                   : options_.engine_factory(*loaded->model, loaded->tokenizer.get());

  absl::MutexLock lock(&mutex_);
  absl::Status started = engine.status();
  if (started.ok()) {
    model_ = std::make_unique<LoadedModel>(*std::move(loaded));
    chat_rendering_ = std::move(chat);
    if (grouped) {
      started = StartGroupRank(request);
    } else {
      driver_ = std::make_shared<EngineDriver>(
          *std::move(engine),
          [this](const EngineStats& stats) { metrics_.RecordEngineStats(stats); });
    }
  }
  if (!started.ok()) {
    // A failed load leaves the worker able to try another.
    if (model_ != nullptr) model_.reset();
    SetState(v1::WORKER_STATE_IDLE,
             absl::StrCat("loading '", request.model_path(), "' as ", group_description_,
                          " failed: ", started.message()));
    return started;
  }
  const ModelConfig& config = model_->model->config();
  response->set_vocab_size(static_cast<uint32_t>(config.vocab_size));
  response->set_max_context_tokens(static_cast<uint32_t>(config.max_position_embeddings));
  // The engine interface does not report its block size, so the capacity is unknown here.
  response->set_kv_cache_tokens(0);
  SetState(
      v1::WORKER_STATE_READY,
      follower_ != nullptr
          ? absl::StrCat(group_description_, " following rank 0 on '", request.model_path(), "'")
          : absl::StrCat("serving '", request.model_path(), "' as ", group_description_));
  return absl::OkStatus();
}

grpc::Status WorkerServiceImpl::LoadShard(grpc::ServerContext* context,
                                          const v1::LoadShardRequest* request,
                                          v1::LoadShardResponse* response) {
  return ToGrpcStatus(Load(*request, response));
}

grpc::Status WorkerServiceImpl::Health(grpc::ServerContext* context,
                                       const v1::HealthRequest* request,
                                       v1::HealthResponse* response) {
  int64_t free_bytes = 0, total_bytes = 0;
  if (options_.device_backend != nullptr &&
      options_.device_backend->DeviceMemory(&free_bytes, &total_bytes)) {
    response->set_device_memory_bytes_total(static_cast<uint64_t>(total_bytes));
    response->set_device_memory_bytes_free(static_cast<uint64_t>(free_bytes));
  } else {
    FillHostMemory(*response);
  }
  // GPU workers' groups need NCCL (their models' collectives run on device buffers).
  response->set_collective_backend(options_.device_backend != nullptr
                                       ? v1::COLLECTIVE_BACKEND_NCCL
                                       : v1::COLLECTIVE_BACKEND_GLOO);
  absl::MutexLock lock(&mutex_);
  response->set_state(state_);
  std::string message = state_message_;
  if (driver_ != nullptr) {
    const EngineStats stats = driver_->Stats();
    response->set_running_requests(static_cast<uint32_t>(driver_->Outstanding()));
    absl::StrAppend(&message, "; engine: ", stats.waiting_requests, " waiting, ",
                    stats.running_requests, " running, KV-cache blocks ",
                    stats.kv_cache_used_blocks, "/", stats.kv_cache_total_blocks, ", ",
                    stats.steps_total, " steps");
  }
  response->set_message(std::move(message));
  return grpc::Status::OK;
}

absl::StatusOr<std::shared_ptr<EngineDriver>> WorkerServiceImpl::AcceptingDriver() const {
  absl::MutexLock lock(&mutex_);
  switch (state_) {
    case v1::WORKER_STATE_READY:
      if (driver_ == nullptr) {
        return absl::FailedPreconditionError(absl::StrCat(
            "this worker is ", group_description_, "; only rank 0 of a group serves RunWork"));
      }
      return driver_;
    case v1::WORKER_STATE_FAILED:
      return absl::UnavailableError(absl::StrCat("the worker failed: ", state_message_));
    case v1::WORKER_STATE_DRAINING:
      return absl::UnavailableError("the worker is draining and accepts no new work");
    default:
      return absl::FailedPreconditionError(absl::StrCat(
          "no model is loaded (worker state ", StateName(state_), "); call LoadShard first"));
  }
}

void WorkerServiceImpl::OnResult(const EngineResult& result) {
  metrics_.RecordResult(result);
  absl::MutexLock lock(&mutex_);
  if (absl::IsCancelled(result.status)) {
    ++cancelled_total_;
  } else {
    ++finished_total_;
  }
}

void WorkerServiceImpl::SubmitWork(const std::shared_ptr<WorkStream>& stream, uint64_t work_id,
                                   const v1::RequestBody& body, bool stream_text) {
  auto reject = [&](const absl::Status& status) {
    metrics_.RecordRejected();
    stream->Reject(ErrorResult(work_id, status));
  };
  absl::StatusOr<std::shared_ptr<EngineDriver>> driver = AcceptingDriver();
  if (!driver.ok()) return reject(driver.status());
  const tokenizer::Tokenizer* tok;
  ChatRendering chat;
  {
    absl::MutexLock lock(&mutex_);
    tok = model_->tokenizer.get();
    chat = chat_rendering_;
  }
  absl::StatusOr<PromptInput> text = RenderPrompt(body, chat);
  if (!text.ok()) return reject(text.status());
  absl::StatusOr<std::vector<int32_t>> prompt = tok->Encode(text->text, text->add_special_tokens);
  if (!prompt.ok()) return reject(prompt.status());
  absl::StatusOr<SamplingParams> params =
      ToSamplingParams(body.sampling(), options_.sampling_defaults, /*fallback_seed=*/work_id);
  if (!params.ok()) return reject(params.status());
  if (!stream->Begin(work_id)) {
    return reject(absl::AlreadyExistsError(
        absl::StrCat("work_id ", work_id, " is already running on this stream")));
  }

  EngineRequest request;
  request.id = stream->EngineId(work_id);
  request.prompt = *std::move(prompt);
  request.params = *std::move(params);
  if (stream_text) {
    auto releaser = std::make_shared<PartialTextReleaser>(*tok, request.params.stop_strings);
    request.on_text_token = [stream, work_id, releaser](int32_t token) {
      std::string text = releaser->Append(token);
      if (!text.empty()) stream->Partial(work_id, std::move(text));
    };
  }
  const bool with_logprobs = request.params.logprobs >= 0;
  (*driver)->Submit(std::move(request),
                    [this, stream, work_id, with_logprobs, tok](EngineResult result) {
                      OnResult(result);
                      v1::WorkResult work_result;
                      work_result.set_work_id(work_id);
                      if (result.status.ok()) {
                        *work_result.mutable_response() =
                            ToResponse(result.result, result.other_choices, with_logprobs, tok);
                      } else {
                        *work_result.mutable_error() = ToError(result.status);
                      }
                      stream->Finish(std::move(work_result));
                    });
}

grpc::Status WorkerServiceImpl::RunWork(
    grpc::ServerContext* context, grpc::ServerReaderWriter<v1::WorkResult, v1::WorkItem>* stream) {
  absl::StatusOr<std::shared_ptr<EngineDriver>> accepting = AcceptingDriver();
  if (!accepting.ok()) return ToGrpcStatus(accepting.status());
  const std::shared_ptr<EngineDriver> driver = *std::move(accepting);
  auto work = std::make_shared<WorkStream>(next_stream_id_.fetch_add(1));

  // Reads on a thread of its own so results are written while the coordinator keeps sending.
  std::thread reader([&] {
    v1::WorkItem item;
    while (stream->Read(&item)) {
      switch (item.action_case()) {
        case v1::WorkItem::kSubmit:
          SubmitWork(work, item.work_id(), item.submit(), item.stream_text());
          break;
        case v1::WorkItem::kCancel:
          if (work->IsLive(item.work_id())) driver->Cancel(work->EngineId(item.work_id()));
          break;
        case v1::WorkItem::ACTION_NOT_SET:
          metrics_.RecordRejected();
          work->Reject(ErrorResult(item.work_id(), absl::InvalidArgumentError(
                                                       "work item has neither submit nor cancel")));
          break;
      }
    }
    // A half-close: the coordinator still waits for the results of what it sent.
    work->CloseInput();
  });

  bool client_gone = false;
  absl::Time next_heartbeat = absl::InfinitePast();  // The first goes out at once.
  while (!client_gone) {
    if (absl::Now() >= next_heartbeat) {
      v1::WorkResult heartbeat;
      heartbeat.mutable_heartbeat()->set_engine_steps_total(
          static_cast<uint64_t>(driver->Stats().steps_total));
      heartbeat.mutable_heartbeat()->set_live_requests(static_cast<uint32_t>(work->LiveCount()));
      if (!stream->Write(heartbeat)) {
        client_gone = true;
        break;
      }
      next_heartbeat = absl::Now() + options_.stream_heartbeat_interval;
    }
    bool done = false;
    std::deque<v1::WorkResult> taken = work->Take(options_.poll_interval, &done);
    if (group_failed_) {
      // The group broke: what it answered since may be wrong, and the coordinator must
      // re-dispatch everything this stream holds, so end the stream instead.
      for (uint64_t work_id : work->Abandon()) driver->Cancel(work->EngineId(work_id));
      // The coordinator keeps its side open; cancelling the call ends the blocked Read() (the
      // client sees CANCELLED; Health says why).
      context->TryCancel();
      reader.join();
      absl::MutexLock lock(&mutex_);
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, state_message_);
    }
    for (const v1::WorkResult& result : taken) {
      if (!stream->Write(result)) {
        client_gone = true;
        break;
      }
    }
    if (context->IsCancelled()) client_gone = true;
    if (done) break;
  }
  if (client_gone) {
    // Nobody will read the results: stop computing them.
    for (uint64_t work_id : work->Abandon()) driver->Cancel(work->EngineId(work_id));
  }
  reader.join();  // Read() fails once the call is over, so this ends promptly
  if (client_gone) return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  return grpc::Status::OK;
}

absl::StatusOr<v1::DrainResponse> WorkerServiceImpl::DrainAndWait(
    bool cancel_running, absl::Duration timeout, const std::function<bool()>& is_abandoned) {
  std::shared_ptr<EngineDriver> driver;
  uint64_t finished_before;
  uint64_t cancelled_before;
  {
    absl::MutexLock lock(&mutex_);
    if (state_ == v1::WORKER_STATE_LOADING) {
      return absl::UnavailableError("a model is loading; drain after LoadShard returns");
    }
    if (state_ != v1::WORKER_STATE_DRAINING) {
      SetState(v1::WORKER_STATE_DRAINING, "draining: accepting no new work");
    }
    driver = driver_;
    finished_before = finished_total_;
    cancelled_before = cancelled_total_;
  }
  if (driver != nullptr) {
    if (cancel_running) driver->CancelAll();
    const absl::Time deadline = absl::Now() + timeout;
    while (!driver->WaitUntilNothingOutstanding(options_.poll_interval)) {
      if (is_abandoned && is_abandoned()) {
        return absl::CancelledError("the drain's caller went away");
      }
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat(driver->Outstanding(), " requests still running after draining for ",
                         absl::FormatDuration(timeout)));
      }
    }
  }
  v1::DrainResponse response;
  absl::MutexLock lock(&mutex_);
  response.set_finished(static_cast<uint32_t>(finished_total_ - finished_before));
  response.set_cancelled(static_cast<uint32_t>(cancelled_total_ - cancelled_before));
  return response;
}

grpc::Status WorkerServiceImpl::Drain(grpc::ServerContext* context, const v1::DrainRequest* request,
                                      v1::DrainResponse* response) {
  absl::Duration timeout = options_.drain_timeout;
  const auto deadline = context->deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    timeout = std::min(timeout, absl::FromChrono(deadline) - absl::Now());
  }
  absl::StatusOr<v1::DrainResponse> drained = DrainAndWait(
      request->cancel_running(), timeout, [context] { return context->IsCancelled(); });
  if (!drained.ok()) return ToGrpcStatus(drained.status());
  *response = *std::move(drained);
  return grpc::Status::OK;
}

}  // namespace flatfleet::engine
