// Fuzzes the messages rank 0 broadcasts to its tensor-parallel followers: any bytes must parse or
// fail cleanly, and a message that parses must encode back to the same bytes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "worker/batching/group_message.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto message = flatfleet::engine::ParseGroupMessage(bytes);
  if (!message.ok()) return 0;
  if (flatfleet::engine::EncodeGroupMessage(*message) != bytes) __builtin_trap();
  return 0;
}
