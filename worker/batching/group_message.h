// What rank 0 of a tensor-parallel group broadcasts to its followers: the next step's plan, a
// heartbeat while idle (so a follower can tell a quiet leader from a lost one within the
// group's timeout), or the stop that ends the group cleanly. One tag byte, then the plan's own
// encoding (step_plan.h) for plans.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "worker/batching/step_plan.h"

namespace flatfleet::engine {

enum class GroupMessageKind : char { kPlan = 'P', kHeartbeat = 'H', kStop = 'S' };

struct GroupMessage {
  GroupMessageKind kind = GroupMessageKind::kHeartbeat;
  StepPlan plan;  // kPlan only
};

std::string EncodeGroupMessage(const GroupMessage& message);
// Rejects an empty message, an unknown tag, a plan that does not parse and trailing bytes after
// a heartbeat or stop, with InvalidArgument.
absl::StatusOr<GroupMessage> ParseGroupMessage(std::string_view bytes);

}  // namespace flatfleet::engine
