// A metric family: one metric per distinct combination of label values ("children").
// Looking up a child takes a lock; callers on hot paths keep the returned pointer, which stays
// valid for the family's lifetime, and then update it lock-free.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace flatfleet::metrics {

template <typename Metric>
class MetricFamily {
 public:
  using LabelValues = std::vector<std::string>;
  using Factory = std::function<std::unique_ptr<Metric>()>;

  // Names must already be validated (the registry does so). A family without labels gets its
  // single child at once, so it is exposed (as 0) before its first update.
  MetricFamily(std::string name, std::string help, std::vector<std::string> label_names,
               Factory factory)
      : name_(std::move(name)),
        help_(std::move(help)),
        label_names_(std::move(label_names)),
        factory_(std::move(factory)) {
    if (label_names_.empty()) children_.emplace(LabelValues{}, factory_());
  }

  // The child for these label values (one per label name, in order), created on first use.
  absl::StatusOr<Metric*> WithLabels(absl::Span<const std::string_view> values) {
    if (values.size() != label_names_.size()) {
      return absl::InvalidArgumentError(absl::StrCat("metric '", name_, "' has labels [",
                                                     absl::StrJoin(label_names_, ", "),
                                                     "] but got ", values.size(), " label values"));
    }
    LabelValues key(values.begin(), values.end());
    absl::MutexLock lock(&mutex_);
    auto [it, inserted] = children_.try_emplace(std::move(key), nullptr);
    if (inserted) it->second = factory_();
    return it->second.get();
  }

  // Drops the child for these label values (its series leaves the exposition), for series of
  // things that end, such as one batch's gauges. Only for children no caller keeps a pointer to.
  void RemoveLabels(absl::Span<const std::string_view> values) {
    LabelValues key(values.begin(), values.end());
    absl::MutexLock lock(&mutex_);
    children_.erase(key);
  }

  // Visits children in label-value order, under the lookup lock.
  void ForEachChild(const std::function<void(const LabelValues&, const Metric&)>& visit) const {
    absl::MutexLock lock(&mutex_);
    for (const auto& [values, metric] : children_) visit(values, *metric);
  }

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

 private:
  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const Factory factory_;
  mutable absl::Mutex mutex_;
  std::map<LabelValues, std::unique_ptr<Metric>> children_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace flatfleet::metrics
