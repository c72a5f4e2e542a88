#include "worker/collectives/communicator.h"

#include <cstdint>

#include "common/status_macros.h"

namespace flatfleet::collectives {

absl::Status BroadcastMessage(Communicator& communicator, std::string& message, int root) {
  uint64_t length = message.size();
  FF_RETURN_IF_ERROR(communicator.Broadcast(
      absl::MakeSpan(reinterpret_cast<std::byte*>(&length), sizeof(length)), root));
  if (communicator.rank() != root) message.assign(length, '\0');
  if (length == 0) return absl::OkStatus();
  return communicator.Broadcast(
      absl::MakeSpan(reinterpret_cast<std::byte*>(message.data()), message.size()), root);
}

}  // namespace flatfleet::collectives
