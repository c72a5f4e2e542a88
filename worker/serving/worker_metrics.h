// The worker's Prometheus metrics: request outcomes, token counts, latency histograms and engine
// gauges, all in one registry that the HTTP exposer serves.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/metrics/metrics_registry.h"
#include "flatfleet/v1/worker.pb.h"
#include "worker/collectives/all_reduce_stats.h"
#include "worker/serving/inference_engine.h"

namespace flatfleet::engine {

class WorkerMetrics {
 public:
  // Outcome label values of flatfleet_worker_requests_total.
  static constexpr std::string_view kCompleted = "completed";
  static constexpr std::string_view kCancelled = "cancelled";
  static constexpr std::string_view kFailed = "failed";      // the engine failed it
  static constexpr std::string_view kRejected = "rejected";  // never reached the engine

  static absl::StatusOr<std::unique_ptr<WorkerMetrics>> Create();

  metrics::MetricsRegistry& registry() { return registry_; }

  // A request that got no further than validation (bad parameters, draining, ...).
  void RecordRejected();
  // A request the engine answered: its outcome and, when it completed, its latencies.
  void RecordResult(const EngineResult& result);
  // Gauges from the latest step, and the token counters as far as the engine has counted.
  void RecordEngineStats(const EngineStats& stats);
  // A tensor-parallel rank's layer all-reduce totals so far (the model's running totals).
  void RecordAllReduce(const collectives::AllReduceStats& totals);
  // flatfleet_worker_state{state}: 1 for the current state, 0 for the others.
  void RecordState(v1::WorkerState state);
  // flatfleet_worker_device_memory_bytes{kind="free"|"total"} of a GPU worker.
  void RecordDeviceMemory(int64_t free_bytes, int64_t total_bytes);

 private:
  WorkerMetrics() = default;
  absl::Status Init();

  metrics::MetricsRegistry registry_;
  metrics::CounterFamily* requests_ = nullptr;
  metrics::Counter* prompt_tokens_ = nullptr;
  metrics::Counter* generation_tokens_ = nullptr;
  metrics::Histogram* time_to_first_token_ = nullptr;
  metrics::Histogram* inter_token_latency_ = nullptr;
  metrics::Histogram* request_duration_ = nullptr;
  metrics::Gauge* waiting_ = nullptr;
  metrics::Gauge* running_ = nullptr;
  metrics::Gauge* kv_blocks_used_ = nullptr;
  metrics::Gauge* kv_blocks_total_ = nullptr;
  metrics::Gauge* kv_usage_ratio_ = nullptr;
  metrics::Histogram* queue_time_ = nullptr;
  metrics::Histogram* prefill_time_ = nullptr;
  metrics::Histogram* decode_time_ = nullptr;
  metrics::Counter* all_reduce_raw_bytes_ = nullptr;
  metrics::Counter* all_reduce_wire_bytes_ = nullptr;
  metrics::Counter* all_reduce_seconds_ = nullptr;
  metrics::Counter* all_reduce_calls_ = nullptr;
  metrics::GaugeFamily* state_ = nullptr;
  metrics::GaugeFamily* device_memory_ = nullptr;

  // Engine totals already added to the counters (the engine reports running totals).
  absl::Mutex mutex_;
  int64_t counted_prompt_tokens_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t counted_generation_tokens_ ABSL_GUARDED_BY(mutex_) = 0;
  collectives::AllReduceStats counted_all_reduce_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace flatfleet::engine
