#include "coordinator/server/coordinator_metrics.h"

#include <string>
#include <vector>

#include "common/status_macros.h"

namespace flatfleet::coordinator {
namespace {

template <typename Metric>
absl::StatusOr<Metric*> OnlyChild(metrics::MetricFamily<Metric>* family) {
  return family->WithLabels({});
}

}  // namespace

absl::StatusOr<std::unique_ptr<CoordinatorMetrics>> CoordinatorMetrics::Create() {
  std::unique_ptr<CoordinatorMetrics> m(new CoordinatorMetrics());
  metrics::MetricsRegistry& r = m->registry_;
  FF_ASSIGN_OR_RETURN(m->requests_,
                      r.AddCounter("flatfleet_coordinator_requests_total",
                                   "Batch and Generate requests by outcome.", {"outcome"}));
  FF_ASSIGN_OR_RETURN(auto* prompt, r.AddCounter("flatfleet_coordinator_prompt_tokens_total",
                                                 "Prompt tokens of answered requests."));
  FF_ASSIGN_OR_RETURN(m->prompt_tokens_, OnlyChild(prompt));
  FF_ASSIGN_OR_RETURN(auto* generated, r.AddCounter("flatfleet_coordinator_generation_tokens_total",
                                                    "Generated tokens of answered requests."));
  FF_ASSIGN_OR_RETURN(m->generation_tokens_, OnlyChild(generated));
  FF_ASSIGN_OR_RETURN(auto* latency, r.AddHistogram("flatfleet_coordinator_request_latency_seconds",
                                                    "From dispatch to a worker until its result.",
                                                    metrics::ExponentialBuckets(0.005, 2.0, 16)));
  FF_ASSIGN_OR_RETURN(m->request_latency_, OnlyChild(latency));
  FF_ASSIGN_OR_RETURN(auto* queue, r.AddGauge("flatfleet_coordinator_queue_depth",
                                              "Pending requests of in-progress jobs."));
  FF_ASSIGN_OR_RETURN(m->queue_depth_, OnlyChild(queue));
  FF_ASSIGN_OR_RETURN(auto* in_flight, r.AddGauge("flatfleet_coordinator_in_flight_requests",
                                                  "Requests dispatched to workers."));
  FF_ASSIGN_OR_RETURN(m->in_flight_, OnlyChild(in_flight));
  FF_ASSIGN_OR_RETURN(m->jobs_,
                      r.AddGauge("flatfleet_coordinator_jobs", "Jobs by state.", {"state"}));
  FF_ASSIGN_OR_RETURN(m->store_errors_,
                      r.AddCounter("flatfleet_coordinator_store_errors_total",
                                   "Job store operations that failed in the storage (disk full, "
                                   "I/O error), by operation.",
                                   {"operation"}));
  FF_ASSIGN_OR_RETURN(auto* unrecorded,
                      r.AddGauge("flatfleet_coordinator_unrecorded_results",
                                 "Results received from workers but not yet stored (retried)."));
  FF_ASSIGN_OR_RETURN(m->unrecorded_results_, OnlyChild(unrecorded));
  FF_ASSIGN_OR_RETURN(auto* stalls,
                      r.AddCounter("flatfleet_coordinator_group_stalls_total",
                                   "Worker group streams dropped as stalled (silent, or no engine "
                                   "progress with work), their requests re-dispatched."));
  FF_ASSIGN_OR_RETURN(m->group_stalls_, OnlyChild(stalls));
  return m;
}

void CoordinatorMetrics::CountRequest(std::string_view outcome, double count) {
  if (absl::StatusOr<metrics::Counter*> child = requests_->WithLabels({outcome}); child.ok()) {
    (*child)->Increment(count);
  }
}

void CoordinatorMetrics::AddTokens(uint64_t prompt_tokens, uint64_t generation_tokens) {
  prompt_tokens_->Increment(static_cast<double>(prompt_tokens));
  generation_tokens_->Increment(static_cast<double>(generation_tokens));
}

void CoordinatorMetrics::ObserveRequestLatency(double seconds) {
  request_latency_->Observe(seconds);
}

void CoordinatorMetrics::CountStoreError(std::string_view operation) {
  if (absl::StatusOr<metrics::Counter*> child = store_errors_->WithLabels({operation});
      child.ok()) {
    (*child)->Increment(1);
  }
}

void CoordinatorMetrics::SetJobsInState(std::string_view state, double count) {
  if (absl::StatusOr<metrics::Gauge*> child = jobs_->WithLabels({state}); child.ok()) {
    (*child)->Set(count);
  }
}

}  // namespace flatfleet::coordinator
