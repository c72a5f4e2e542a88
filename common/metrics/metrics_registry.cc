#include "common/metrics/metrics_registry.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "common/metrics/metric_names.h"
#include "common/metrics/text_format.h"

namespace flatfleet::metrics {
namespace {

// `{a="x",b="y"}` from label names and values, plus an optional extra pair (histogram "le");
// empty when there are no labels at all.
std::string FormatLabels(const std::vector<std::string>& names,
                         const std::vector<std::string>& values, const std::string& extra_name = "",
                         const std::string& extra_value = "") {
  if (names.empty() && extra_name.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    absl::StrAppend(&out, names[i], "=\"", EscapeLabelValue(values[i]), "\"");
  }
  if (!extra_name.empty()) {
    if (!names.empty()) out += ',';
    absl::StrAppend(&out, extra_name, "=\"", EscapeLabelValue(extra_value), "\"");
  }
  out += '}';
  return out;
}

template <typename Family>
void AppendHeader(const Family& family, const char* type, std::string* out) {
  absl::StrAppend(out, "# HELP ", family.name(), " ", EscapeHelp(family.help()), "\n");
  absl::StrAppend(out, "# TYPE ", family.name(), " ", type, "\n");
}

template <typename Family>
void AppendScalarFamily(const Family& family, const char* type, std::string* out) {
  AppendHeader(family, type, out);
  family.ForEachChild([&](const std::vector<std::string>& values, const auto& metric) {
    absl::StrAppend(out, family.name(), FormatLabels(family.label_names(), values), " ",
                    FormatSampleValue(metric.Value()), "\n");
  });
}

void AppendHistogramFamily(const HistogramFamily& family, std::string* out) {
  AppendHeader(family, "histogram", out);
  const std::string& name = family.name();
  family.ForEachChild([&](const std::vector<std::string>& values, const Histogram& histogram) {
    const HistogramSnapshot snapshot = histogram.Snapshot();
    for (size_t i = 0; i < snapshot.cumulative_counts.size(); ++i) {
      const std::string bound = i < snapshot.upper_bounds.size()
                                    ? FormatSampleValue(snapshot.upper_bounds[i])
                                    : std::string("+Inf");
      absl::StrAppend(out, name, "_bucket", FormatLabels(family.label_names(), values, "le", bound),
                      " ", snapshot.cumulative_counts[i], "\n");
    }
    const std::string labels = FormatLabels(family.label_names(), values);
    absl::StrAppend(out, name, "_sum", labels, " ", FormatSampleValue(snapshot.sum), "\n");
    absl::StrAppend(out, name, "_count", labels, " ", snapshot.count, "\n");
  });
}

}  // namespace

absl::Status MetricsRegistry::Reserve(std::string_view name_view,
                                      const std::vector<std::string>& label_names,
                                      const std::vector<std::string>& sample_names) {
  const std::string name(name_view);
  if (absl::Status status = ValidateMetricName(name); !status.ok()) return status;
  std::set<std::string_view> seen;
  for (const std::string& label : label_names) {
    if (absl::Status status = ValidateLabelName(label); !status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("metric '", name, "': ", status.message()));
    }
    if (!seen.insert(label).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric '", name, "' repeats label name '", label, "'"));
    }
  }
  if (families_.contains(name)) {
    return absl::AlreadyExistsError(absl::StrCat("metric '", name, "' is already registered"));
  }
  for (const std::string& sample : sample_names) {
    if (sample_names_.contains(sample)) {
      return absl::AlreadyExistsError(absl::StrCat(
          "metric '", name, "' would expose samples named '", sample, "', already in use"));
    }
  }
  sample_names_.insert(sample_names.begin(), sample_names.end());
  return absl::OkStatus();
}

absl::StatusOr<CounterFamily*> MetricsRegistry::AddCounter(std::string_view name_view,
                                                           std::string_view help,
                                                           std::vector<std::string> label_names) {
  const std::string name(name_view);
  if (!name.ends_with("_total") || name == "_total") {
    return absl::InvalidArgumentError(
        absl::StrCat("counter name '", name, "' must end in \"_total\""));
  }
  absl::MutexLock lock(&mutex_);
  if (absl::Status status = Reserve(name, label_names, {std::string(name)}); !status.ok()) {
    return status;
  }
  auto family =
      std::make_unique<CounterFamily>(std::string(name), std::string(help), std::move(label_names),
                                      [] { return std::make_unique<Counter>(); });
  CounterFamily* result = family.get();
  families_.emplace(std::string(name), std::move(family));
  return result;
}

absl::StatusOr<GaugeFamily*> MetricsRegistry::AddGauge(std::string_view name_view,
                                                       std::string_view help,
                                                       std::vector<std::string> label_names) {
  const std::string name(name_view);
  absl::MutexLock lock(&mutex_);
  if (absl::Status status = Reserve(name, label_names, {std::string(name)}); !status.ok()) {
    return status;
  }
  auto family =
      std::make_unique<GaugeFamily>(std::string(name), std::string(help), std::move(label_names),
                                    [] { return std::make_unique<Gauge>(); });
  GaugeFamily* result = family.get();
  families_.emplace(std::string(name), std::move(family));
  return result;
}

absl::StatusOr<HistogramFamily*> MetricsRegistry::AddHistogram(
    std::string_view name_view, std::string_view help, std::vector<double> upper_bounds,
    std::vector<std::string> label_names) {
  const std::string name(name_view);
  for (const std::string& label : label_names) {
    if (label == "le") {
      return absl::InvalidArgumentError(
          absl::StrCat("histogram '", name, "' may not use the label name 'le' (reserved)"));
    }
  }
  absl::StatusOr<std::vector<double>> bounds = Histogram::CheckBuckets(std::move(upper_bounds));
  if (!bounds.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("histogram '", name, "': ", bounds.status().message()));
  }
  absl::MutexLock lock(&mutex_);
  const std::vector<std::string> samples = {absl::StrCat(name, "_bucket"),
                                            absl::StrCat(name, "_sum"),
                                            absl::StrCat(name, "_count"), std::string(name)};
  if (absl::Status status = Reserve(name, label_names, samples); !status.ok()) return status;
  auto family = std::make_unique<HistogramFamily>(
      std::string(name), std::string(help), std::move(label_names),
      [bounds = *std::move(bounds)] { return std::make_unique<Histogram>(bounds); });
  HistogramFamily* result = family.get();
  families_.emplace(std::string(name), std::move(family));
  return result;
}

std::string MetricsRegistry::Expose() const {
  std::string out;
  absl::MutexLock lock(&mutex_);
  for (const auto& [name, family] : families_) {
    std::visit(
        [&out](const auto& typed) {
          using Family = typename std::decay_t<decltype(typed)>::element_type;
          if constexpr (std::is_same_v<Family, CounterFamily>) {
            AppendScalarFamily(*typed, "counter", &out);
          } else if constexpr (std::is_same_v<Family, GaugeFamily>) {
            AppendScalarFamily(*typed, "gauge", &out);
          } else {
            AppendHistogramFamily(*typed, &out);
          }
        },
        family);
  }
  return out;
}

}  // namespace flatfleet::metrics
