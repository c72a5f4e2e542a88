// The coordinator's Prometheus metrics. Families are created once; hot paths keep the child
// pointers resolved here and update them lock-free. The per-model series (requests, tokens,
// latencies, queue) carry a `model` label: the model this coordinator serves.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/metrics/metrics_registry.h"

namespace flatfleet::coordinator {

class CoordinatorMetrics {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinatorMetrics>> Create(std::string_view model = "");

  // A request's final outcome: "succeeded", "failed", "cancelled" or "requeued" (not final).
  void CountRequest(std::string_view outcome, double count = 1);
  void AddTokens(uint64_t prompt_tokens, uint64_t generation_tokens);
  void ObserveRequestLatency(double seconds);
  void SetQueueDepth(double pending_requests) { queue_depth_->Set(pending_requests); }
  void AddInFlight(double delta) { in_flight_->Increment(delta); }
  // A job store operation that failed in the storage (disk full, I/O error).
  void CountStoreError(std::string_view operation);
  void AddUnrecordedResults(double delta) { unrecorded_results_->Increment(delta); }
  // A worker group's stream taken as lost for silence or lack of progress.
  void CountGroupStall() { group_stalls_->Increment(1); }
  // Replaces the jobs-by-state gauge values (from a periodic store scan).
  void SetJobsInState(std::string_view state, double count);
  // From the same scan, one call per job listed: flatfleet_coordinator_batch_requests{batch,
  // state} while the job runs (its series go when it ends), and, when a job seen running ends,
  // its duration from creation to its last update into
  // flatfleet_coordinator_batch_duration_seconds.
  void RecordBatch(std::string_view batch_id, bool finished, double pending, double in_flight,
                   double completed, double failed, double cancelled, double duration_seconds);

  const metrics::MetricsRegistry& registry() const { return registry_; }
  std::string Expose() const { return registry_.Expose(); }

 private:
  CoordinatorMetrics() = default;

  metrics::MetricsRegistry registry_;
  metrics::CounterFamily* requests_ = nullptr;
  metrics::Counter* prompt_tokens_ = nullptr;
  metrics::Counter* generation_tokens_ = nullptr;
  metrics::Histogram* request_latency_ = nullptr;
  metrics::Gauge* queue_depth_ = nullptr;
  metrics::Gauge* in_flight_ = nullptr;
  metrics::GaugeFamily* jobs_ = nullptr;
  metrics::CounterFamily* store_errors_ = nullptr;
  metrics::Gauge* unrecorded_results_ = nullptr;
  metrics::Counter* group_stalls_ = nullptr;
  metrics::GaugeFamily* batch_requests_ = nullptr;
  metrics::Histogram* batch_duration_ = nullptr;
  std::string model_;
  // Jobs whose batch_requests series exist (the refresher's thread only).
  std::set<std::string, std::less<>> running_batches_;
};

}  // namespace flatfleet::coordinator
