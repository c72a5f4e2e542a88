#include "worker/sampling/stop_conditions.h"

#include <algorithm>

namespace flatfleet::engine {

std::optional<size_t> FindStopString(std::string_view text, std::span<const std::string> stops) {
  std::optional<size_t> earliest;
  for (const std::string& stop : stops) {
    if (stop.empty()) continue;
    const size_t at = text.find(stop);
    if (at != std::string_view::npos && (!earliest || at < *earliest)) earliest = at;
  }
  return earliest;
}

}  // namespace flatfleet::engine
