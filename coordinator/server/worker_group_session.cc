#include "coordinator/server/worker_group_session.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/batch_output_line.h"
#include "coordinator/server/work_conversion.h"
#include "security/secure_channel.h"

namespace flatfleet::coordinator {
namespace {

std::chrono::system_clock::time_point DeadlineIn(absl::Duration timeout) {
  return absl::ToChronoTime(absl::Now() + timeout);
}

void LogIfError(const absl::Status& status) {
  if (!status.ok()) std::fprintf(stderr, "coordinator: %s\n", status.ToString().c_str());
}

}  // namespace

WorkerGroupSession::WorkerGroupSession(const SessionContext* context, WorkerGroupPlan plan)
    : context_(context),
      plan_(std::move(plan)),
      owner_(
          absl::StrCat(plan_.group_id, "@",
                       plan_.rank_addresses.empty() ? std::string("?") : plan_.rank_addresses[0])) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(context_->options.worker_max_message_bytes);
  arguments.SetMaxSendMessageSize(context_->options.worker_max_message_bytes);
  for (const std::string& address : plan_.rank_addresses) {
    stubs_.push_back(v1::WorkerService::NewStub(
        security::MakeSecureChannel(address, context_->options.worker_channel, arguments)));
  }
}

WorkerGroupSession::~WorkerGroupSession() { Stop(); }

void WorkerGroupSession::Start() {
  thread_ = std::thread([this] { Run(); });
}

void WorkerGroupSession::Stop() {
  {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
    for (grpc::ClientContext* call : active_calls_) call->TryCancel();
    signal_.SignalAll();
  }
  if (thread_.joinable()) thread_.join();
}

void WorkerGroupSession::Wake() {
  absl::MutexLock lock(&mutex_);
  woken_ = true;
  signal_.SignalAll();
}

void WorkerGroupSession::Cancel(const std::vector<RequestKey>& requests) {
  absl::MutexLock lock(&mutex_);
  for (const auto& [work_id, entry] : in_flight_) {
    if (entry.request &&
        std::find(requests.begin(), requests.end(), *entry.request) != requests.end()) {
      cancels_to_send_.push_back(work_id);
    }
  }
  woken_ = true;
  signal_.SignalAll();
}

absl::StatusOr<uint64_t> WorkerGroupSession::SubmitInteractive(v1::RequestBody body,
                                                               InteractiveCallback done,
                                                               PartialCallback partial) {
  absl::MutexLock lock(&mutex_);
  if (!stream_open_ || stream_broken_ || stopping_) {
    return absl::UnavailableError(absl::StrCat(plan_.group_id, " has no open stream"));
  }
  const uint64_t work_id = context_->next_work_id->fetch_add(1);
  v1::WorkItem item;
  item.set_work_id(work_id);
  *item.mutable_submit() = std::move(body);
  item.set_stream_text(partial != nullptr);
  interactive_to_send_.push_back(std::move(item));
  InFlight entry;
  entry.done = std::move(done);
  entry.partial = std::move(partial);
  entry.dispatched_at = absl::Now();
  in_flight_.emplace(work_id, std::move(entry));
  woken_ = true;
  signal_.SignalAll();
  return work_id;
}

void WorkerGroupSession::CancelInteractive(uint64_t work_id) {
  absl::MutexLock lock(&mutex_);
  if (in_flight_.contains(work_id)) cancels_to_send_.push_back(work_id);
  woken_ = true;
  signal_.SignalAll();
}

bool WorkerGroupSession::connected() const {
  absl::MutexLock lock(&mutex_);
  return stream_open_ && !stream_broken_;
}

void WorkerGroupSession::Sleep(absl::Duration timeout) {
  absl::MutexLock lock(&mutex_);
  const absl::Time until = absl::Now() + timeout;
  while (!woken_ && !stopping_ && !stream_broken_) {
    if (signal_.WaitWithDeadline(&mutex_, until)) break;
  }
  woken_ = false;
}

void WorkerGroupSession::SleepUnlessStopped(absl::Duration timeout) {
  absl::MutexLock lock(&mutex_);
  mutex_.AwaitWithTimeout(absl::Condition(&stopping_), timeout);
}

template <typename Call>
grpc::Status WorkerGroupSession::CallCancellable(absl::Duration timeout, Call call) {
  grpc::ClientContext call_context;
  call_context.set_deadline(DeadlineIn(timeout));
  {
    absl::MutexLock lock(&mutex_);
    if (stopping_) return grpc::Status(grpc::StatusCode::CANCELLED, "stopping");
    active_calls_.push_back(&call_context);
  }
  grpc::Status status = call(&call_context);
  absl::MutexLock lock(&mutex_);
  active_calls_.erase(std::find(active_calls_.begin(), active_calls_.end(), &call_context));
  return status;
}

void WorkerGroupSession::Run() {
  absl::Duration backoff = context_->options.reconnect_backoff_initial;
  while (true) {
    {
      absl::MutexLock lock(&mutex_);
      if (stopping_) return;
    }
    if (!RetryStoreWork()) {
      // Serving again would only claim work the store cannot take.
      Sleep(context_->options.store_retry_interval);
      continue;
    }
    absl::Status loaded = EnsureLoaded();
    if (loaded.ok()) {
      Serve();
      if (results_this_stream_ > 0) backoff = context_->options.reconnect_backoff_initial;
      if (last_stream_stalled_) {
        // A group that keeps stalling waits longer each time, so it cannot keep taking work
        // from healthy groups only to lose it again.
        stall_backoff_ = stall_backoff_ == absl::ZeroDuration()
                             ? context_->options.stall_backoff_initial
                             : std::min(stall_backoff_ * 2, context_->options.stall_backoff_max);
        SleepUnlessStopped(stall_backoff_);
      } else if (results_this_stream_ > 0) {
        stall_backoff_ = absl::ZeroDuration();
      }
    } else if (loaded.message() != last_problem_) {
      last_problem_ = std::string(loaded.message());
      std::fprintf(stderr, "coordinator: %s not ready (will retry): %s\n", plan_.group_id.c_str(),
                   last_problem_.c_str());
    }
    Sleep(backoff);
    backoff = std::min(backoff * 2, context_->options.reconnect_backoff_max);
  }
}

absl::Status WorkerGroupSession::EnsureLoaded() {
  std::vector<uint32_t> to_load;
  bool any_ready = false;
  std::vector<bool> rank_needs_nccl(stubs_.size(), false);
  for (uint32_t rank = 0; rank < stubs_.size(); ++rank) {
    v1::HealthResponse health;
    grpc::Status status =
        CallCancellable(context_->options.health_timeout, [&](grpc::ClientContext* call) {
          return stubs_[rank]->Health(call, v1::HealthRequest(), &health);
        });
    const std::string& address = plan_.rank_addresses[rank];
    if (!status.ok()) {
      return absl::UnavailableError(
          absl::StrCat("worker ", address, ": Health failed: ", status.error_message()));
    }
    rank_needs_nccl[rank] = health.collective_backend() == v1::COLLECTIVE_BACKEND_NCCL;
    switch (health.state()) {
      case v1::WORKER_STATE_READY:
        any_ready = true;
        break;
      case v1::WORKER_STATE_IDLE:
        to_load.push_back(rank);
        break;
      case v1::WORKER_STATE_FAILED:
        // A rank of a broken group: it releases its model and joins a new group on LoadShard.
        if (stubs_.size() > 1) {
          to_load.push_back(rank);
          break;
        }
        [[fallthrough]];
      default:
        return absl::UnavailableError(absl::StrCat("worker ", address, " is ",
                                                   v1::WorkerState_Name(health.state()), ": ",
                                                   health.message()));
    }
  }
  if (to_load.empty()) return absl::OkStatus();
  if (stubs_.size() > 1 && any_ready) {
    // A live rank cannot join a new group; it notices its lost peer within the group timeout
    // and turns FAILED, and the next attempt reloads the whole group.
    return absl::UnavailableError(
        absl::StrCat(plan_.group_id, " is partly loaded; waiting for its ranks to notice"));
  }
  v1::Rendezvous rendezvous;
  rendezvous.set_group_id(plan_.group_id);
  for (const std::string& peer : plan_.rank_addresses) rendezvous.add_peer_addresses(peer);
  if (stubs_.size() > 1) {
    // Rank 0 hosts the group's rendezvous store; every rank's LoadShard then meets there.
    // NCCL for a group of GPU workers, Gloo for CPU workers.
    absl::StatusOr<GroupBackend> backend = ChooseGroupBackend(rank_needs_nccl);
    if (!backend.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(plan_.group_id, ": ", backend.status().message()));
    }
    v1::OpenRendezvousRequest open;
    open.set_group_id(plan_.group_id);
    open.set_tp_size(static_cast<uint32_t>(stubs_.size()));
    open.set_backend(*backend == GroupBackend::kNccl ? v1::COLLECTIVE_BACKEND_NCCL
                                                     : v1::COLLECTIVE_BACKEND_GLOO);
    const std::string& leader = plan_.rank_addresses[0];
    open.set_host(leader.substr(0, leader.rfind(':')));
    v1::OpenRendezvousResponse opened;
    grpc::Status status = CallCancellable(
        context_->options.health_timeout,
        [&](grpc::ClientContext* call) { return stubs_[0]->OpenRendezvous(call, open, &opened); });
    if (!status.ok()) {
      return absl::UnavailableError(
          absl::StrCat("worker ", leader, ": OpenRendezvous failed: ", status.error_message()));
    }
    rendezvous.set_backend(opened.backend());
    rendezvous.set_store_address(opened.store_address());
    rendezvous.set_nccl_unique_id(opened.nccl_unique_id());
    rendezvous.set_timeout_ms(
        static_cast<uint32_t>(absl::ToInt64Milliseconds(context_->options.group_timeout)));
    rendezvous.set_all_reduce_compression(context_->options.compress_all_reduce
                                              ? v1::ALL_REDUCE_COMPRESSION_INT8
                                              : v1::ALL_REDUCE_COMPRESSION_NONE);
  }
  // Ranks of a group rendezvous while loading, so their LoadShard calls must run together.
  std::vector<grpc::Status> statuses(to_load.size());
  std::vector<std::thread> loaders;
  for (size_t i = 0; i < to_load.size(); ++i) {
    loaders.emplace_back([&, i] {
      const uint32_t rank = to_load[i];
      v1::LoadShardRequest request;
      request.set_model_path(context_->model.path);
      request.set_chat_template(context_->model.chat_template);
      request.set_model_name(context_->model.name);
      request.set_tp_rank(rank);
      request.set_tp_size(context_->tp_size);
      request.set_device_index(-1);
      *request.mutable_rendezvous() = rendezvous;
      v1::LoadShardResponse response;
      statuses[i] =
          CallCancellable(context_->options.load_shard_timeout, [&](grpc::ClientContext* call) {
            return stubs_[rank]->LoadShard(call, request, &response);
          });
    });
  }
  for (std::thread& loader : loaders) loader.join();
  for (size_t i = 0; i < to_load.size(); ++i) {
    if (!statuses[i].ok()) {
      return absl::UnavailableError(
          absl::StrCat("worker ", plan_.rank_addresses[to_load[i]],
                       ": LoadShard failed: ", statuses[i].error_message()));
    }
  }
  return absl::OkStatus();
}

void WorkerGroupSession::Serve() {
  grpc::ClientContext stream_context;
  {
    absl::MutexLock lock(&mutex_);
    if (stopping_) return;
    active_calls_.push_back(&stream_context);
    stream_broken_ = false;
    results_this_stream_ = 0;
  }
  std::unique_ptr<Stream> stream = stubs_[0]->RunWork(&stream_context);
  {
    absl::MutexLock lock(&mutex_);
    stream_open_ = true;
  }
  if (!last_problem_.empty()) {
    std::fprintf(stderr, "coordinator: %s connected to %s\n", plan_.group_id.c_str(),
                 plan_.rank_addresses[0].c_str());
    last_problem_.clear();
  }
  {
    absl::MutexLock lock(&mutex_);
    last_message_at_ = absl::Now();
    last_progress_at_ = last_message_at_;
    heartbeats_seen_ = false;
    last_engine_steps_ = 0;
  }
  last_stream_stalled_ = false;
  std::thread reader([&] {
    v1::WorkResult result;
    while (stream->Read(&result)) {
      {
        absl::MutexLock lock(&mutex_);
        last_message_at_ = absl::Now();
        if (result.has_heartbeat()) {
          const uint64_t steps = result.heartbeat().engine_steps_total();
          if (!heartbeats_seen_ || steps != last_engine_steps_)
            last_progress_at_ = last_message_at_;
          heartbeats_seen_ = true;
          last_engine_steps_ = steps;
        } else {
          last_progress_at_ = last_message_at_;
        }
      }
      if (!result.has_heartbeat()) HandleResult(result);
    }
    absl::MutexLock lock(&mutex_);
    stream_broken_ = true;
    signal_.SignalAll();
  });
  while (true) {
    {
      absl::MutexLock lock(&mutex_);
      if (stopping_ || stream_broken_) break;
    }
    if (const std::string stall = StallReason(); !stall.empty()) {
      std::fprintf(stderr, "coordinator: %s stalled (%s); re-dispatching its work\n",
                   plan_.group_id.c_str(), stall.c_str());
      last_stream_stalled_ = true;
      if (context_->metrics) context_->metrics->CountGroupStall();
      break;
    }
    ExpireStaleWork();
    if (!DispatchQueued(*stream)) break;
    // While the store refuses results, claim nothing: retry them first.
    const bool store_caught_up = RetryStoreWork();
    int free_slots = 0;
    {
      absl::MutexLock lock(&mutex_);
      free_slots = context_->options.in_flight_window - static_cast<int>(in_flight_.size());
    }
    if (!store_caught_up) free_slots = 0;
    bool maybe_more = false;
    if (free_slots > 0 && !ClaimAndDispatch(*stream, free_slots, maybe_more)) break;
    if (!maybe_more) Sleep(context_->options.poll_interval);
  }
  bool stopping = false;
  {
    absl::MutexLock lock(&mutex_);
    stream_open_ = false;
    stopping = stopping_;
  }
  // Ends the call at once on both sides; the worker cancels what it was running.
  stream_context.TryCancel();
  reader.join();
  grpc::Status finished = stream->Finish();
  {
    absl::MutexLock lock(&mutex_);
    active_calls_.erase(std::find(active_calls_.begin(), active_calls_.end(), &stream_context));
  }
  if (!stopping) {
    last_problem_ = absl::StrCat("RunWork stream to ", plan_.rank_addresses[0],
                                 " ended: ", finished.error_message());
    std::fprintf(stderr, "coordinator: %s lost: %s\n", plan_.group_id.c_str(),
                 last_problem_.c_str());
  }
  FailInFlight(/*worker_lost=*/!stopping);
}

bool WorkerGroupSession::DispatchQueued(Stream& stream) {
  std::vector<v1::WorkItem> items;
  {
    absl::MutexLock lock(&mutex_);
    items = std::move(interactive_to_send_);
    interactive_to_send_.clear();
    for (uint64_t work_id : cancels_to_send_) {
      v1::WorkItem cancel;
      cancel.set_work_id(work_id);
      cancel.mutable_cancel();
      items.push_back(std::move(cancel));
    }
    cancels_to_send_.clear();
  }
  for (const v1::WorkItem& item : items) {
    if (!stream.Write(item)) return false;
  }
  return true;
}

bool WorkerGroupSession::ClaimAndDispatch(Stream& stream, int free_slots, bool& maybe_more) {
  JobStore& store = *context_->store;
  absl::StatusOr<std::vector<ClaimedRequest>> claimed = store.ClaimPendingRoundRobin(
      context_->model.name, free_slots, owner_, context_->options.lease_ms, cursor_);
  if (!claimed.ok()) {
    LogIfError(claimed.status());
    return true;
  }
  maybe_more = static_cast<int>(claimed->size()) == free_slots;
  for (ClaimedRequest& claim : *claimed) {
    if (context_->job_cancelled && context_->job_cancelled(claim.key.job_id)) {
      LogIfError(store.ReleaseInFlight(claim.key, "job cancelled").status());
      continue;
    }
    absl::StatusOr<BatchRequestLine> parsed = ParseStoredBody(claim.body_json);
    if (!parsed.ok()) {
      ResultRecord invalid{ResultOutcome::kFailed,
                           FormatErrorLine(claim.custom_id, "invalid_request",
                                           std::string(parsed.status().message()))};
      LogIfError(store.RecordResult(claim.key, invalid).status());
      continue;
    }
    const uint64_t work_id = context_->next_work_id->fetch_add(1);
    v1::WorkItem item;
    item.set_work_id(work_id);
    *item.mutable_submit() = ToRequestBodyProto(*parsed);
    {
      absl::MutexLock lock(&mutex_);
      // An idle group's progress clock starts with its first request.
      if (in_flight_.empty()) last_progress_at_ = absl::Now();
      InFlight entry;
      entry.request = claim.key;
      entry.custom_id = claim.custom_id;
      entry.endpoint = parsed->endpoint;
      entry.dispatched_at = absl::Now();
      in_flight_.emplace(work_id, std::move(entry));
    }
    if (context_->metrics) context_->metrics->AddInFlight(1);
    // A failed write leaves the rest of the claim in flight under this owner; the requeue
    // after the stream ends returns them all.
    if (!stream.Write(item)) return false;
  }
  return true;
}

std::string WorkerGroupSession::StallReason() {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mutex_);
  if (!heartbeats_seen_) return "";  // A worker without heartbeats: only leases apply.
  if (now - last_message_at_ > context_->options.liveness_timeout) {
    return absl::StrCat("nothing received for ", absl::FormatDuration(now - last_message_at_));
  }
  if (!in_flight_.empty() && now - last_progress_at_ > context_->options.progress_timeout) {
    return absl::StrCat("no engine progress for ", absl::FormatDuration(now - last_progress_at_),
                        " with ", in_flight_.size(), " requests");
  }
  return "";
}

void WorkerGroupSession::ExpireStaleWork() {
  const absl::Time cutoff = absl::Now() - absl::Milliseconds(context_->options.lease_ms);
  int64_t expired = 0;
  {
    absl::MutexLock lock(&mutex_);
    for (auto it = in_flight_.begin(); it != in_flight_.end();) {
      auto current = it++;
      if (!current->second.request || current->second.dispatched_at > cutoff) continue;
      cancels_to_send_.push_back(current->first);
      in_flight_.erase(current);
      ++expired;
    }
  }
  if (expired == 0) return;
  std::fprintf(stderr, "coordinator: %s: %lld request(s) outlived their lease; cancelled\n",
               plan_.group_id.c_str(), static_cast<long long>(expired));
  if (context_->metrics) context_->metrics->AddInFlight(-static_cast<double>(expired));
}

void WorkerGroupSession::HandleResult(const v1::WorkResult& result) {
  if (result.has_partial()) {
    PartialCallback partial;
    {
      absl::MutexLock lock(&mutex_);
      auto it = in_flight_.find(result.work_id());
      if (it == in_flight_.end()) return;
      partial = it->second.partial;
    }
    if (partial) partial(result.partial().text());
    return;
  }
  InFlight entry;
  {
    absl::MutexLock lock(&mutex_);
    auto it = in_flight_.find(result.work_id());
    if (it == in_flight_.end()) return;  // Unknown or already answered: dropped.
    entry = std::move(it->second);
    in_flight_.erase(it);
    ++results_this_stream_;
    woken_ = true;
    signal_.SignalAll();
  }
  if (!entry.request) {
    entry.done(result);
    return;
  }
  CoordinatorMetrics* metrics = context_->metrics;
  if (metrics) metrics->AddInFlight(-1);
  JobStore& store = *context_->store;
  if (result.has_error() && result.error().code() == "cancelled") {
    // Stopped on our request (or by a draining worker): no output line, no attempt spent.
    absl::StatusOr<bool> released = store.ReleaseInFlight(*entry.request, "cancelled");
    LogIfError(released.status());
    if (metrics && released.ok() && *released) metrics->CountRequest("cancelled");
    return;
  }
  Unrecorded answer;
  answer.request = *entry.request;
  answer.record = FormatWorkResult(entry.custom_id, context_->model.name, entry.endpoint, result);
  answer.prompt_tokens = result.response().usage().prompt_tokens();
  answer.completion_tokens = result.response().usage().completion_tokens();
  answer.dispatched_at = entry.dispatched_at;
  if (!Record(std::move(answer))) {
    absl::MutexLock lock(&mutex_);
    // Wakes the session thread, which retries and meanwhile claims nothing.
    woken_ = true;
    signal_.SignalAll();
  }
}

bool WorkerGroupSession::Record(Unrecorded answer) {
  CoordinatorMetrics* metrics = context_->metrics;
  absl::StatusOr<bool> recorded = context_->store->RecordResult(answer.request, answer.record);
  if (!recorded.ok()) {
    {
      absl::MutexLock lock(&mutex_);
      unrecorded_.push_back(std::move(answer));
    }
    if (!store_failing_.exchange(true)) {
      std::fprintf(stderr, "coordinator: %s: keeping results the store refused, retrying: %s\n",
                   plan_.group_id.c_str(), recorded.status().ToString().c_str());
    }
    if (metrics) metrics->AddUnrecordedResults(1);
    return false;
  }
  if (metrics && *recorded) {
    const bool succeeded = answer.record.outcome == ResultOutcome::kSucceeded;
    metrics->CountRequest(succeeded ? "succeeded" : "failed");
    if (succeeded) metrics->AddTokens(answer.prompt_tokens, answer.completion_tokens);
    metrics->ObserveRequestLatency(absl::ToDoubleSeconds(absl::Now() - answer.dispatched_at));
  }
  return true;
}

bool WorkerGroupSession::RetryStoreWork() {
  std::vector<Unrecorded> retry;
  {
    absl::MutexLock lock(&mutex_);
    if (unrecorded_.empty() && !requeue_owed_) return true;
    if (absl::Now() < next_store_retry_) return false;
    retry.swap(unrecorded_);
  }
  next_store_retry_ = absl::Now() + context_->options.store_retry_interval;
  CoordinatorMetrics* metrics = context_->metrics;
  if (metrics) metrics->AddUnrecordedResults(-static_cast<double>(retry.size()));
  for (Unrecorded& answer : retry) Record(std::move(answer));
  if (requeue_owed_) {
    absl::StatusOr<RequeueReport> report = context_->store->RequeueWorker(owner_, *requeue_owed_);
    if (report.ok()) {
      requeue_owed_.reset();
      if (metrics) {
        metrics->CountRequest("requeued", static_cast<double>(report->requeued));
        metrics->CountRequest("failed", static_cast<double>(report->failed));
        metrics->CountRequest("cancelled", static_cast<double>(report->cancelled));
      }
    }
  }
  absl::MutexLock lock(&mutex_);
  const bool done = unrecorded_.empty() && !requeue_owed_;
  if (done && store_failing_.exchange(false)) {
    std::fprintf(stderr, "coordinator: %s: the store took the kept results again\n",
                 plan_.group_id.c_str());
  }
  return done;
}

void WorkerGroupSession::FailInFlight(bool worker_lost) {
  absl::flat_hash_map<uint64_t, InFlight> lost;
  {
    absl::MutexLock lock(&mutex_);
    lost = std::move(in_flight_);
    in_flight_.clear();
    interactive_to_send_.clear();
    cancels_to_send_.clear();
  }
  int64_t batch_requests = 0;
  for (auto& [work_id, entry] : lost) {
    if (entry.request) {
      ++batch_requests;
      if (!worker_lost) {
        LogIfError(
            context_->store->ReleaseInFlight(*entry.request, "coordinator stopping").status());
      }
    } else {
      entry.done(absl::UnavailableError(absl::StrCat(plan_.group_id, " stream ended")));
    }
  }
  CoordinatorMetrics* metrics = context_->metrics;
  if (metrics) metrics->AddInFlight(-static_cast<double>(batch_requests));
  if (!worker_lost) return;
  // Everything this group holds in the store, including claims never written to the stream.
  absl::StatusOr<RequeueReport> report = context_->store->RequeueWorker(owner_, "worker lost");
  LogIfError(report.status());
  if (!report.ok()) requeue_owed_ = "worker lost";  // Retried before this group serves again.
  if (metrics && report.ok()) {
    metrics->CountRequest("requeued", static_cast<double>(report->requeued));
    metrics->CountRequest("failed", static_cast<double>(report->failed));
    metrics->CountRequest("cancelled", static_cast<double>(report->cancelled));
  }
}

}  // namespace flatfleet::coordinator
