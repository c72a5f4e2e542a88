// Wire format of the rendezvous key-value store (TcpStoreServer / TcpStoreClient).
//
// Every message is a frame: u32 payload length (little-endian), then the payload.
// Requests:  u8 command, then for kSet: key, value; kGet: u32 timeout_ms, key;
//            kWait: u32 timeout_ms, u32 key count, keys. Strings are u32 length + bytes.
// Replies:   u8 TcpStoreReply, then for a successful kGet the value's bytes.
// All socket I/O is bounded by a deadline so neither side can hang on a silent peer.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flatfleet::collectives {

enum class TcpStoreCommand : uint8_t { kSet = 1, kGet = 2, kWait = 3 };
enum class TcpStoreReply : uint8_t { kOk = 0, kTimedOut = 1, kBadRequest = 2 };

inline constexpr uint32_t kTcpStoreMaxFrameBytes = 64u << 20;

using TcpStoreDeadline = std::chrono::steady_clock::time_point;

// Appends little-endian integers and length-prefixed strings to a payload.
void AppendU8(std::string& payload, uint8_t value);
void AppendU32(std::string& payload, uint32_t value);
void AppendString(std::string& payload, std::string_view value);

// Consumes a payload front to back; every read fails cleanly on truncation.
class PayloadReader {
 public:
  explicit PayloadReader(std::string_view payload) : rest_(payload) {}
  absl::StatusOr<uint8_t> ReadU8();
  absl::StatusOr<uint32_t> ReadU32();
  absl::StatusOr<std::string> ReadString();
  std::string_view rest() const { return rest_; }

 private:
  std::string_view rest_;
};

absl::Status SendFrame(int fd, std::string_view payload, TcpStoreDeadline deadline);
// NotFound if the peer closed the connection cleanly before a new frame.
absl::StatusOr<std::string> ReceiveFrame(int fd, TcpStoreDeadline deadline);

}  // namespace flatfleet::collectives
