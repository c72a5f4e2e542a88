#include "worker/batching/group_message.h"

#include "absl/strings/str_format.h"

namespace flatfleet::engine {

std::string EncodeGroupMessage(const GroupMessage& message) {
  std::string bytes(1, static_cast<char>(message.kind));
  if (message.kind == GroupMessageKind::kPlan) bytes += SerializeStepPlan(message.plan);
  return bytes;
}

absl::StatusOr<GroupMessage> ParseGroupMessage(std::string_view bytes) {
  if (bytes.empty()) return absl::InvalidArgumentError("group message: empty");
  GroupMessage message;
  const std::string_view body = bytes.substr(1);
  switch (bytes[0]) {
    case static_cast<char>(GroupMessageKind::kPlan): {
      absl::StatusOr<StepPlan> plan = ParseStepPlan(body);
      if (!plan.ok()) {
        return absl::InvalidArgumentError(
            absl::StrFormat("group message: bad step plan: %s", plan.status().message()));
      }
      message.kind = GroupMessageKind::kPlan;
      message.plan = *std::move(plan);
      return message;
    }
    case static_cast<char>(GroupMessageKind::kHeartbeat):
    case static_cast<char>(GroupMessageKind::kStop):
      if (!body.empty()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "group message: %d unexpected bytes after tag '%c'", body.size(), bytes[0]));
      }
      message.kind = static_cast<GroupMessageKind>(bytes[0]);
      return message;
    default:
      return absl::InvalidArgumentError(absl::StrFormat("group message: unknown tag byte 0x%02x",
                                                        static_cast<unsigned char>(bytes[0])));
  }
}

}  // namespace flatfleet::engine
