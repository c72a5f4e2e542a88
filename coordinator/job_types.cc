#include "coordinator/job_types.h"

namespace flatfleet::coordinator {
namespace {

constexpr std::pair<JobState, std::string_view> kJobStateNames[] = {
    {JobState::kValidating, "validating"}, {JobState::kInProgress, "in_progress"},
    {JobState::kFinalizing, "finalizing"}, {JobState::kCompleted, "completed"},
    {JobState::kFailed, "failed"},         {JobState::kCancelling, "cancelling"},
    {JobState::kCancelled, "cancelled"},
};

}  // namespace

std::string_view JobStateName(JobState state) {
  for (const auto& [value, name] : kJobStateNames) {
    if (value == state) return name;
  }
  return "unknown";
}

std::optional<JobState> ParseJobState(std::string_view name) {
  for (const auto& [value, known] : kJobStateNames) {
    if (known == name) return value;
  }
  return std::nullopt;
}

bool IsTerminal(JobState state) {
  return state == JobState::kCompleted || state == JobState::kFailed ||
         state == JobState::kCancelled;
}

std::string_view RequestStateName(RequestState state) {
  switch (state) {
    case RequestState::kPending:
      return "pending";
    case RequestState::kInFlight:
      return "in_flight";
    case RequestState::kSucceeded:
      return "succeeded";
    case RequestState::kFailed:
      return "failed";
    case RequestState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

}  // namespace flatfleet::coordinator
