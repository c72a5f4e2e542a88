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

// Request states of one batch's gauge, in RecordBatch's argument order.
constexpr std::string_view kBatchRequestStates[] = {"pending", "in_flight", "completed", "failed",
                                                    "cancelled"};

}  // namespace

absl::StatusOr<std::unique_ptr<CoordinatorMetrics>> CoordinatorMetrics::Create(
    std::string_view model) {
  std::unique_ptr<CoordinatorMetrics> m(new CoordinatorMetrics());
  m->model_ = std::string(model);
  metrics::MetricsRegistry& r = m->registry_;
  const std::string_view model_label[] = {m->model_};
  auto model_child = [&](auto* family) { return family->WithLabels(model_label); };
  FF_ASSIGN_OR_RETURN(
      m->requests_, r.AddCounter("flatfleet_coordinator_requests_total",
                                 "Batch and Generate requests by outcome.", {"model", "outcome"}));
  FF_ASSIGN_OR_RETURN(auto* prompt, r.AddCounter("flatfleet_coordinator_prompt_tokens_total",
                                                 "Prompt tokens of answered requests.", {"model"}));
  FF_ASSIGN_OR_RETURN(m->prompt_tokens_, model_child(prompt));
  FF_ASSIGN_OR_RETURN(auto* generated,
                      r.AddCounter("flatfleet_coordinator_generation_tokens_total",
                                   "Generated tokens of answered requests.", {"model"}));
  FF_ASSIGN_OR_RETURN(m->generation_tokens_, model_child(generated));
  FF_ASSIGN_OR_RETURN(auto* latency,
                      r.AddHistogram("flatfleet_coordinator_request_latency_seconds",
                                     "From dispatch to a worker until its result.",
                                     metrics::ExponentialBuckets(0.005, 2.0, 16), {"model"}));
  FF_ASSIGN_OR_RETURN(m->request_latency_, model_child(latency));
  FF_ASSIGN_OR_RETURN(auto* queue, r.AddGauge("flatfleet_coordinator_queue_depth",
                                              "Pending requests of in-progress jobs.", {"model"}));
  FF_ASSIGN_OR_RETURN(m->queue_depth_, model_child(queue));
  FF_ASSIGN_OR_RETURN(auto* in_flight, r.AddGauge("flatfleet_coordinator_in_flight_requests",
                                                  "Requests dispatched to workers.", {"model"}));
  FF_ASSIGN_OR_RETURN(m->in_flight_, model_child(in_flight));
  FF_ASSIGN_OR_RETURN(m->batch_requests_,
                      r.AddGauge("flatfleet_coordinator_batch_requests",
                                 "Requests of each running batch by state (pending, in_flight, "
                                 "completed, failed, cancelled); a batch's series go when it ends.",
                                 {"model", "batch", "state"}));
  // A batch runs for seconds to a 24 h completion window and beyond: 1 s .. 2^17 s (~36 h).
  FF_ASSIGN_OR_RETURN(auto* batch_duration,
                      r.AddHistogram("flatfleet_coordinator_batch_duration_seconds",
                                     "From a batch's creation until it ended (completed, failed "
                                     "or cancelled), for batches that ended while this "
                                     "coordinator ran.",
                                     metrics::ExponentialBuckets(1.0, 2.0, 18), {"model"}));
  FF_ASSIGN_OR_RETURN(m->batch_duration_, model_child(batch_duration));
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
  if (absl::StatusOr<metrics::Counter*> child = requests_->WithLabels({model_, outcome});
      child.ok()) {
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

void CoordinatorMetrics::RecordBatch(std::string_view batch_id, bool finished, double pending,
                                     double in_flight, double completed, double failed,
                                     double cancelled, double duration_seconds) {
  auto it = running_batches_.find(batch_id);
  if (finished) {
    if (it == running_batches_.end()) return;  // ended before this coordinator saw it run
    for (std::string_view state : kBatchRequestStates) {
      batch_requests_->RemoveLabels({model_, batch_id, state});
    }
    running_batches_.erase(it);
    batch_duration_->Observe(duration_seconds);
    return;
  }
  if (it == running_batches_.end()) running_batches_.emplace(batch_id);
  const double values[] = {pending, in_flight, completed, failed, cancelled};
  for (size_t i = 0; i < std::size(values); ++i) {
    if (auto child = batch_requests_->WithLabels({model_, batch_id, kBatchRequestStates[i]});
        child.ok()) {
      (*child)->Set(values[i]);
    }
  }
}

void CoordinatorMetrics::SetJobsInState(std::string_view state, double count) {
  if (absl::StatusOr<metrics::Gauge*> child = jobs_->WithLabels({state}); child.ok()) {
    (*child)->Set(count);
  }
}

}  // namespace flatfleet::coordinator
