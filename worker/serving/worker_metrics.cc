#include "worker/serving/worker_metrics.h"

#include <string>
#include <utility>
#include <vector>

#include "common/status_macros.h"

namespace flatfleet::engine {
namespace {

// Label values of flatfleet_worker_state, all exposed from the start.
constexpr std::pair<v1::WorkerState, std::string_view> kStateLabels[] = {
    {v1::WORKER_STATE_IDLE, "idle"},     {v1::WORKER_STATE_LOADING, "loading"},
    {v1::WORKER_STATE_READY, "ready"},   {v1::WORKER_STATE_DRAINING, "draining"},
    {v1::WORKER_STATE_FAILED, "failed"},
};

template <typename Metric>
absl::StatusOr<Metric*> OnlyChild(absl::StatusOr<metrics::MetricFamily<Metric>*> family) {
  if (!family.ok()) return family.status();
  return (*family)->WithLabels({});
}

}  // namespace

absl::StatusOr<std::unique_ptr<WorkerMetrics>> WorkerMetrics::Create() {
  std::unique_ptr<WorkerMetrics> worker_metrics(new WorkerMetrics());
  FF_RETURN_IF_ERROR(worker_metrics->Init());
  return worker_metrics;
}

absl::Status WorkerMetrics::Init() {
  FF_ASSIGN_OR_RETURN(requests_,
                      registry_.AddCounter("flatfleet_worker_requests_total",
                                           "Requests finished, by outcome.", {"outcome"}));
  // Expose every outcome from the start, so rates work before the first of each kind.
  for (std::string_view outcome : {kCompleted, kCancelled, kFailed, kRejected}) {
    if (auto child = requests_->WithLabels({outcome}); !child.ok()) return child.status();
  }
  FF_ASSIGN_OR_RETURN(prompt_tokens_,
                      OnlyChild(registry_.AddCounter("flatfleet_worker_prompt_tokens_total",
                                                     "Prompt tokens prefilled by the engine.")));
  FF_ASSIGN_OR_RETURN(generation_tokens_,
                      OnlyChild(registry_.AddCounter(
                          "flatfleet_worker_generation_tokens_total",
                          "Tokens sampled by the engine (final stop tokens included).")));
  // Token latencies of a CPU engine reach seconds; 1 ms .. ~65 s covers CPU and GPU.
  const std::vector<double> latency_buckets = metrics::ExponentialBuckets(0.001, 2, 17);
  FF_ASSIGN_OR_RETURN(time_to_first_token_,
                      OnlyChild(registry_.AddHistogram(
                          "flatfleet_worker_time_to_first_token_seconds",
                          "Time from submission to a request's first token.", latency_buckets)));
  FF_ASSIGN_OR_RETURN(
      inter_token_latency_,
      OnlyChild(registry_.AddHistogram(
          "flatfleet_worker_inter_token_latency_seconds",
          "Mean time between a request's tokens after the first: (total - ttft) / (tokens - 1).",
          latency_buckets)));
  FF_ASSIGN_OR_RETURN(
      request_duration_,
      OnlyChild(registry_.AddHistogram("flatfleet_worker_request_duration_seconds",
                                       "Time from submission to a completed request's result.",
                                       metrics::ExponentialBuckets(0.01, 2, 16))));
  // Phases of a request's time in the engine (vLLM's request_{queue,prefill,decode}_time).
  const std::vector<double> phase_buckets = metrics::ExponentialBuckets(0.001, 2, 20);
  FF_ASSIGN_OR_RETURN(queue_time_, OnlyChild(registry_.AddHistogram(
                                       "flatfleet_worker_request_queue_time_seconds",
                                       "Time a request waited in the engine's queue before its "
                                       "first admission to the running batch.",
                                       phase_buckets)));
  FF_ASSIGN_OR_RETURN(prefill_time_,
                      OnlyChild(registry_.AddHistogram(
                          "flatfleet_worker_request_prefill_time_seconds",
                          "Time from a request's admission to its first token.", phase_buckets)));
  FF_ASSIGN_OR_RETURN(decode_time_,
                      OnlyChild(registry_.AddHistogram(
                          "flatfleet_worker_request_decode_time_seconds",
                          "Time from a request's first token to its result.", phase_buckets)));
  FF_ASSIGN_OR_RETURN(
      waiting_, OnlyChild(registry_.AddGauge("flatfleet_worker_waiting_requests",
                                             "Requests queued in the engine, not yet running.")));
  FF_ASSIGN_OR_RETURN(running_, OnlyChild(registry_.AddGauge("flatfleet_worker_running_requests",
                                                             "Sequences in the running batch.")));
  FF_ASSIGN_OR_RETURN(kv_blocks_used_,
                      OnlyChild(registry_.AddGauge("flatfleet_worker_kv_cache_used_blocks",
                                                   "KV-cache blocks holding sequences.")));
  FF_ASSIGN_OR_RETURN(kv_blocks_total_,
                      OnlyChild(registry_.AddGauge("flatfleet_worker_kv_cache_total_blocks",
                                                   "KV-cache blocks in the pool.")));
  FF_ASSIGN_OR_RETURN(kv_usage_ratio_,
                      OnlyChild(registry_.AddGauge(
                          "flatfleet_worker_kv_cache_usage_ratio",
                          "Fraction of the KV-cache pool's blocks in use, 0 to 1 (0 when the "
                          "pool is empty or not allocated).")));
  // Tensor-parallel ranks: the all-reduces after o_proj and down_proj. "raw" is what a ring FP32
  // all-reduce of the same data would send, "wire" what was sent (INT8 codes and scales when
  // compressed); their ratio is the compression.
  FF_ASSIGN_OR_RETURN(
      metrics::CounterFamily * all_reduce_bytes,
      registry_.AddCounter("flatfleet_allreduce_bytes_total",
                           "Bytes this rank sent in tensor-parallel layer all-reduces: raw (FP32 "
                           "ring equivalent) or wire (actually sent).",
                           {"kind"}));
  FF_ASSIGN_OR_RETURN(all_reduce_raw_bytes_, all_reduce_bytes->WithLabels({"raw"}));
  FF_ASSIGN_OR_RETURN(all_reduce_wire_bytes_, all_reduce_bytes->WithLabels({"wire"}));
  FF_ASSIGN_OR_RETURN(all_reduce_seconds_,
                      OnlyChild(registry_.AddCounter(
                          "flatfleet_allreduce_seconds_total",
                          "Wall time inside tensor-parallel layer all-reduces (compression "
                          "included).")));
  FF_ASSIGN_OR_RETURN(all_reduce_calls_,
                      OnlyChild(registry_.AddCounter("flatfleet_allreduce_calls_total",
                                                     "Tensor-parallel layer all-reduces run.")));
  FF_ASSIGN_OR_RETURN(state_, registry_.AddGauge("flatfleet_worker_state",
                                                 "1 for the worker's state (idle, loading, "
                                                 "ready, draining, failed), 0 for the others.",
                                                 {"state"}));
  for (const auto& [state, label] : kStateLabels) {
    if (auto child = state_->WithLabels({label}); !child.ok()) return child.status();
  }
  FF_ASSIGN_OR_RETURN(device_memory_,
                      registry_.AddGauge("flatfleet_worker_device_memory_bytes",
                                         "GPU memory of this worker's device: free or total "
                                         "(after the weights and the KV pool are allocated).",
                                         {"kind"}));
  return absl::OkStatus();
}

void WorkerMetrics::RecordState(v1::WorkerState state) {
  for (const auto& [value, label] : kStateLabels) {
    if (auto child = state_->WithLabels({label}); child.ok()) {
      (*child)->Set(value == state ? 1 : 0);
    }
  }
}

void WorkerMetrics::RecordDeviceMemory(int64_t free_bytes, int64_t total_bytes) {
  if (auto free = device_memory_->WithLabels({"free"}); free.ok()) {
    (*free)->Set(static_cast<double>(free_bytes));
  }
  if (auto total = device_memory_->WithLabels({"total"}); total.ok()) {
    (*total)->Set(static_cast<double>(total_bytes));
  }
}

void WorkerMetrics::RecordRejected() {
  if (auto counter = requests_->WithLabels({kRejected}); counter.ok()) (*counter)->Increment();
}

void WorkerMetrics::RecordResult(const EngineResult& result) {
  const std::string_view outcome = result.status.ok()                 ? kCompleted
                                   : absl::IsCancelled(result.status) ? kCancelled
                                                                      : kFailed;
  if (auto counter = requests_->WithLabels({outcome}); counter.ok()) (*counter)->Increment();
  if (!result.status.ok()) return;
  request_duration_->Observe(result.total_seconds);
  queue_time_->Observe(result.queue_seconds);
  if (result.result.completion_tokens > 0) {
    prefill_time_->Observe(result.prefill_seconds);
    decode_time_->Observe(result.decode_seconds);
  }
  if (result.result.completion_tokens > 0) {
    time_to_first_token_->Observe(result.time_to_first_token_seconds);
  }
  if (result.result.completion_tokens > 1) {
    inter_token_latency_->Observe((result.total_seconds - result.time_to_first_token_seconds) /
                                  static_cast<double>(result.result.completion_tokens - 1));
  }
}

void WorkerMetrics::RecordEngineStats(const EngineStats& stats) {
  waiting_->Set(static_cast<double>(stats.waiting_requests));
  running_->Set(static_cast<double>(stats.running_requests));
  kv_blocks_used_->Set(static_cast<double>(stats.kv_cache_used_blocks));
  kv_blocks_total_->Set(static_cast<double>(stats.kv_cache_total_blocks));
  kv_usage_ratio_->Set(stats.kv_cache_total_blocks > 0
                           ? static_cast<double>(stats.kv_cache_used_blocks) /
                                 static_cast<double>(stats.kv_cache_total_blocks)
                           : 0.0);
  absl::MutexLock lock(&mutex_);
  if (stats.prompt_tokens_total > counted_prompt_tokens_) {
    prompt_tokens_->Increment(
        static_cast<double>(stats.prompt_tokens_total - counted_prompt_tokens_));
    counted_prompt_tokens_ = stats.prompt_tokens_total;
  }
  if (stats.generated_tokens_total > counted_generation_tokens_) {
    generation_tokens_->Increment(
        static_cast<double>(stats.generated_tokens_total - counted_generation_tokens_));
    counted_generation_tokens_ = stats.generated_tokens_total;
  }
}

}  // namespace flatfleet::engine

namespace flatfleet::engine {

void WorkerMetrics::RecordAllReduce(const collectives::AllReduceStats& totals) {
  absl::MutexLock lock(&mutex_);
  collectives::AllReduceStats& counted = counted_all_reduce_;
  // Fewer calls than counted: a new model (a new group) started its totals from zero.
  if (totals.calls < counted.calls) counted = collectives::AllReduceStats();
  if (totals.raw_bytes > counted.raw_bytes) {
    all_reduce_raw_bytes_->Increment(static_cast<double>(totals.raw_bytes - counted.raw_bytes));
  }
  if (totals.wire_bytes > counted.wire_bytes) {
    all_reduce_wire_bytes_->Increment(static_cast<double>(totals.wire_bytes - counted.wire_bytes));
  }
  if (totals.seconds_total > counted.seconds_total) {
    all_reduce_seconds_->Increment(totals.seconds_total - counted.seconds_total);
  }
  if (totals.calls > counted.calls) {
    all_reduce_calls_->Increment(static_cast<double>(totals.calls - counted.calls));
  }
  counted = totals;
}

}  // namespace flatfleet::engine
