#include "worker/collectives/tcp_store_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "gloo/common/error.h"
#include "worker/collectives/tcp_store_protocol.h"

namespace flatfleet::collectives {
namespace {

// Slack on top of the server-side wait for the reply to travel back.
constexpr std::chrono::milliseconds kReplyGrace{2000};

void ThrowIfError(const absl::Status& status) {
  if (!status.ok()) throw gloo::IoException(std::string(status.ToString()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpStoreClient>> TcpStoreClient::Connect(
    const std::string& host, uint16_t port, std::chrono::milliseconds timeout) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1) {
    return absl::InvalidArgumentError("tcp store client: host must be an IPv4 address: " + host);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return absl::UnavailableError("tcp store client: socket failed");
    if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
      const int enable = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &enable, sizeof(enable));
      return std::unique_ptr<TcpStoreClient>(new TcpStoreClient(fd, timeout));
    }
    const int error = errno;
    close(fd);
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrFormat("tcp store client: cannot reach %s:%d: %s",
                                                         host, port, std::strerror(error)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

TcpStoreClient::~TcpStoreClient() { close(fd_); }

absl::StatusOr<std::string> TcpStoreClient::Call(const std::string& request,
                                                 std::chrono::milliseconds server_wait) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (broken_) return absl::UnavailableError("tcp store client: connection failed earlier");
  const auto deadline = std::chrono::steady_clock::now() + server_wait + kReplyGrace;
  absl::Status sent = SendFrame(fd_, request, deadline);
  absl::StatusOr<std::string> reply =
      sent.ok() ? ReceiveFrame(fd_, deadline) : absl::StatusOr<std::string>(sent);
  if (!reply.ok()) {
    broken_ = true;
    if (absl::IsNotFound(reply.status())) {
      return absl::UnavailableError("tcp store client: server closed the connection");
    }
    return reply.status();
  }
  PayloadReader reader(*reply);
  FF_ASSIGN_OR_RETURN(const uint8_t code, reader.ReadU8());
  switch (static_cast<TcpStoreReply>(code)) {
    case TcpStoreReply::kOk:
      return std::string(reader.rest());
    case TcpStoreReply::kTimedOut:
      return absl::DeadlineExceededError(
          absl::StrFormat("tcp store: keys missing after %d ms", server_wait.count()));
    default:
      return absl::InternalError("tcp store: server rejected the request");
  }
}

absl::Status TcpStoreClient::Set(const std::string& key, const std::string& value) {
  std::string request;
  AppendU8(request, static_cast<uint8_t>(TcpStoreCommand::kSet));
  AppendString(request, key);
  AppendString(request, value);
  return Call(request, std::chrono::milliseconds(0)).status();
}

absl::StatusOr<std::string> TcpStoreClient::Get(const std::string& key,
                                                std::chrono::milliseconds timeout) {
  std::string request;
  AppendU8(request, static_cast<uint8_t>(TcpStoreCommand::kGet));
  AppendU32(request, static_cast<uint32_t>(timeout.count()));
  AppendString(request, key);
  return Call(request, timeout);
}

absl::Status TcpStoreClient::Wait(const std::vector<std::string>& keys,
                                  std::chrono::milliseconds timeout) {
  std::string request;
  AppendU8(request, static_cast<uint8_t>(TcpStoreCommand::kWait));
  AppendU32(request, static_cast<uint32_t>(timeout.count()));
  AppendU32(request, static_cast<uint32_t>(keys.size()));
  for (const std::string& key : keys) AppendString(request, key);
  return Call(request, timeout).status();
}

void TcpStoreClient::set(const std::string& key, const std::vector<char>& data) {
  ThrowIfError(Set(key, std::string(data.begin(), data.end())));
}

std::vector<char> TcpStoreClient::get(const std::string& key) {
  absl::StatusOr<std::string> value = Get(key, timeout_);
  ThrowIfError(value.status());
  return std::vector<char>(value->begin(), value->end());
}

void TcpStoreClient::wait(const std::vector<std::string>& keys) { wait(keys, timeout_); }

void TcpStoreClient::wait(const std::vector<std::string>& keys,
                          const std::chrono::milliseconds& timeout) {
  ThrowIfError(Wait(keys, timeout));
}

}  // namespace flatfleet::collectives
