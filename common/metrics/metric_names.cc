#include "common/metrics/metric_names.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace flatfleet::metrics {
namespace {

bool IsNameStart(char c) { return absl::ascii_isalpha(c) || c == '_'; }
bool IsNameChar(char c) { return absl::ascii_isalnum(c) || c == '_'; }

}  // namespace

absl::Status ValidateMetricName(std::string_view name_view) {
  const std::string name(name_view);
  if (name.empty()) return absl::InvalidArgumentError("metric name is empty");
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = c == ':' || (i == 0 ? IsNameStart(c) : IsNameChar(c));
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat("metric name '", name,
                                                     "' has an invalid character at position ", i,
                                                     " (allowed: [a-zA-Z_:][a-zA-Z0-9_:]*)"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateLabelName(std::string_view name_view) {
  const std::string name(name_view);
  if (name.empty()) return absl::InvalidArgumentError("label name is empty");
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (!(i == 0 ? IsNameStart(c) : IsNameChar(c))) {
      return absl::InvalidArgumentError(absl::StrCat("label name '", name,
                                                     "' has an invalid character at position ", i,
                                                     " (allowed: [a-zA-Z_][a-zA-Z0-9_]*)"));
    }
  }
  if (name.starts_with("__")) {
    return absl::InvalidArgumentError(
        absl::StrCat("label name '", name, "' starts with '__', which Prometheus reserves"));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::metrics
