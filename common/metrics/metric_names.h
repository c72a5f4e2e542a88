// Name grammar of the Prometheus data model, checked when a metric family is registered.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace flatfleet::metrics {

// [a-zA-Z_:][a-zA-Z0-9_:]*
absl::Status ValidateMetricName(std::string_view name);

// [a-zA-Z_][a-zA-Z0-9_]*, and not starting with "__" (reserved for Prometheus itself).
absl::Status ValidateLabelName(std::string_view name);

}  // namespace flatfleet::metrics
