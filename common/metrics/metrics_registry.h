// The process's metric families and their Prometheus text exposition (format 0.0.4).
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/metrics/counter.h"
#include "common/metrics/gauge.h"
#include "common/metrics/histogram.h"
#include "common/metrics/metric_family.h"

namespace flatfleet::metrics {

using CounterFamily = MetricFamily<Counter>;
using GaugeFamily = MetricFamily<Gauge>;
using HistogramFamily = MetricFamily<Histogram>;

class MetricsRegistry {
 public:
  // The Content-Type of Expose()'s output.
  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

  // Counter names must end in "_total". Returned families live as long as the registry.
  absl::StatusOr<CounterFamily*> AddCounter(std::string_view name, std::string_view help,
                                            std::vector<std::string> label_names = {});
  absl::StatusOr<GaugeFamily*> AddGauge(std::string_view name, std::string_view help,
                                        std::vector<std::string> label_names = {});
  // `upper_bounds`: finite and strictly increasing (the +Inf bucket is implicit). The label
  // name "le" is reserved for the buckets.
  absl::StatusOr<HistogramFamily*> AddHistogram(std::string_view name, std::string_view help,
                                                std::vector<double> upper_bounds,
                                                std::vector<std::string> label_names = {});

  // Every family, by name, in the text exposition format.
  std::string Expose() const;

 private:
  using AnyFamily = std::variant<std::unique_ptr<CounterFamily>, std::unique_ptr<GaugeFamily>,
                                 std::unique_ptr<HistogramFamily>>;

  // Checks names and that none of the family's sample names is taken, then reserves them.
  absl::Status Reserve(std::string_view name, const std::vector<std::string>& label_names,
                       const std::vector<std::string>& sample_names)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  mutable absl::Mutex mutex_;
  std::map<std::string, AnyFamily, std::less<>> families_ ABSL_GUARDED_BY(mutex_);
  std::set<std::string, std::less<>> sample_names_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace flatfleet::metrics
