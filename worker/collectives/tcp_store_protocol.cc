#include "worker/collectives/tcp_store_protocol.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace flatfleet::collectives {
namespace {

// Waits until `fd` is ready for `events` or the deadline passes.
absl::Status PollUntil(int fd, short events, TcpStoreDeadline deadline) {
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return absl::DeadlineExceededError("tcp store: socket timed out");
    pollfd descriptor{fd, events, 0};
    const int ready = poll(&descriptor, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (ready > 0) return absl::OkStatus();
    if (ready < 0 && errno != EINTR) {
      return absl::UnavailableError(absl::StrFormat("tcp store: poll: %s", std::strerror(errno)));
    }
  }
}

absl::Status SendAll(int fd, const char* data, size_t size, TcpStoreDeadline deadline) {
  while (size > 0) {
    FF_RETURN_IF_ERROR(PollUntil(fd, POLLOUT, deadline));
    const ssize_t sent = send(fd, data, size, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return absl::UnavailableError(absl::StrFormat("tcp store: send: %s", std::strerror(errno)));
    }
    data += sent;
    size -= sent;
  }
  return absl::OkStatus();
}

// Returns false if the peer closed the connection before the first byte.
absl::StatusOr<bool> ReceiveAll(int fd, char* data, size_t size, TcpStoreDeadline deadline) {
  size_t received_total = 0;
  while (received_total < size) {
    FF_RETURN_IF_ERROR(PollUntil(fd, POLLIN, deadline));
    const ssize_t received = recv(fd, data + received_total, size - received_total, 0);
    if (received == 0) {
      if (received_total == 0) return false;
      return absl::UnavailableError("tcp store: connection closed mid-frame");
    }
    if (received < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return absl::UnavailableError(absl::StrFormat("tcp store: recv: %s", std::strerror(errno)));
    }
    received_total += received;
  }
  return true;
}

}  // namespace

void AppendU8(std::string& payload, uint8_t value) { payload.push_back(static_cast<char>(value)); }

void AppendU32(std::string& payload, uint32_t value) {
  for (int shift = 0; shift < 32; shift += 8) payload.push_back(static_cast<char>(value >> shift));
}

void AppendString(std::string& payload, std::string_view value) {
  AppendU32(payload, static_cast<uint32_t>(value.size()));
  payload.append(value);
}

absl::StatusOr<uint8_t> PayloadReader::ReadU8() {
  if (rest_.empty()) return absl::InvalidArgumentError("tcp store: truncated payload");
  const uint8_t value = static_cast<uint8_t>(rest_[0]);
  rest_.remove_prefix(1);
  return value;
}

absl::StatusOr<uint32_t> PayloadReader::ReadU32() {
  if (rest_.size() < 4) return absl::InvalidArgumentError("tcp store: truncated payload");
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i)
    value |= static_cast<uint32_t>(static_cast<uint8_t>(rest_[i])) << (8 * i);
  rest_.remove_prefix(4);
  return value;
}

absl::StatusOr<std::string> PayloadReader::ReadString() {
  FF_ASSIGN_OR_RETURN(const uint32_t size, ReadU32());
  if (rest_.size() < size) return absl::InvalidArgumentError("tcp store: truncated string");
  std::string value(rest_.substr(0, size));
  rest_.remove_prefix(size);
  return value;
}

absl::Status SendFrame(int fd, std::string_view payload, TcpStoreDeadline deadline) {
  if (payload.size() > kTcpStoreMaxFrameBytes) {
    return absl::InvalidArgumentError("tcp store: frame too large");
  }
  std::string frame;
  frame.reserve(4 + payload.size());
  AppendU32(frame, static_cast<uint32_t>(payload.size()));
  frame.append(payload);
  return SendAll(fd, frame.data(), frame.size(), deadline);
}

absl::StatusOr<std::string> ReceiveFrame(int fd, TcpStoreDeadline deadline) {
  char header[4];
  FF_ASSIGN_OR_RETURN(const bool got_header, ReceiveAll(fd, header, sizeof(header), deadline));
  if (!got_header) return absl::NotFoundError("tcp store: connection closed");
  FF_ASSIGN_OR_RETURN(const uint32_t size, PayloadReader(std::string_view(header, 4)).ReadU32());
  if (size > kTcpStoreMaxFrameBytes)
    return absl::InvalidArgumentError("tcp store: frame too large");
  std::string payload(size, '\0');
  FF_ASSIGN_OR_RETURN(const bool got_payload, ReceiveAll(fd, payload.data(), size, deadline));
  if (!got_payload && size > 0)
    return absl::UnavailableError("tcp store: connection closed mid-frame");
  return payload;
}

}  // namespace flatfleet::collectives
