#include "worker/collectives/tcp_store_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "worker/collectives/tcp_store_protocol.h"

namespace flatfleet::collectives {
namespace {

std::string Reply(TcpStoreReply reply) { return std::string(1, static_cast<char>(reply)); }

absl::Status ErrnoError(const char* what) {
  return absl::UnavailableError(
      absl::StrFormat("tcp store server: %s: %s", what, std::strerror(errno)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpStoreServer>> TcpStoreServer::Start(const std::string& host,
                                                                      uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1) {
    return absl::InvalidArgumentError("tcp store server: host must be an IPv4 address: " + host);
  }
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError("socket");
  const int enable = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &enable, sizeof(enable));
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(fd, 128) != 0) {
    absl::Status status = ErrnoError("bind/listen");
    close(fd);
    return status;
  }
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  std::unique_ptr<TcpStoreServer> server(new TcpStoreServer(fd, ntohs(address.sin_port)));
  server->accept_thread_ = std::thread([raw = server.get()] { raw->AcceptLoop(); });
  return server;
}

TcpStoreServer::TcpStoreServer(int listen_fd, uint16_t port) : listen_fd_(listen_fd), port_(port) {}

TcpStoreServer::~TcpStoreServer() {
  Stop();
  close(listen_fd_);
}

void TcpStoreServer::Stop() {
  if (stopping_.exchange(true)) return;
  shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
  if (accept_thread_.joinable()) accept_thread_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (int fd : connection_fds_) shutdown(fd, SHUT_RDWR);  // wakes blocked reads
    threads.swap(connection_threads_);
  }
  key_added_.notify_all();  // wakes waits
  for (std::thread& thread : threads) thread.join();
}

void TcpStoreServer::AcceptLoop() {
  while (!stopping_) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // listening socket shut down
    }
    const int enable = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &enable, sizeof(enable));
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) {
      close(fd);
      return;
    }
    connection_fds_.insert(fd);
    connection_threads_.emplace_back([this, fd] { Serve(fd); });
  }
}

void TcpStoreServer::Serve(int fd) {
  // Clients keep their connection open between requests, so an idle read has no deadline;
  // Stop() shuts the socket down to end it.
  while (!stopping_) {
    absl::StatusOr<std::string> request = ReceiveFrame(fd, TcpStoreDeadline::max());
    if (!request.ok()) break;
    const std::string reply = Handle(*request);
    const auto reply_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    if (!SendFrame(fd, reply, reply_deadline).ok()) break;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  connection_fds_.erase(fd);
  close(fd);
}

bool TcpStoreServer::WaitForKeys(const std::vector<std::string>& keys,
                                 std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  return key_added_.wait_for(lock, timeout, [&] {
    return stopping_ || std::all_of(keys.begin(), keys.end(),
                                    [&](const std::string& key) { return values_.count(key); });
  }) && !stopping_;
}

std::string TcpStoreServer::Handle(const std::string& request) {
  PayloadReader reader(request);
  const absl::StatusOr<uint8_t> command = reader.ReadU8();
  if (!command.ok()) return Reply(TcpStoreReply::kBadRequest);
  switch (static_cast<TcpStoreCommand>(*command)) {
    case TcpStoreCommand::kSet: {
      absl::StatusOr<std::string> key = reader.ReadString();
      absl::StatusOr<std::string> value = reader.ReadString();
      if (!key.ok() || !value.ok()) return Reply(TcpStoreReply::kBadRequest);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        values_[*key] = std::move(*value);
      }
      key_added_.notify_all();
      return Reply(TcpStoreReply::kOk);
    }
    case TcpStoreCommand::kGet: {
      absl::StatusOr<uint32_t> timeout_ms = reader.ReadU32();
      absl::StatusOr<std::string> key = reader.ReadString();
      if (!timeout_ms.ok() || !key.ok()) return Reply(TcpStoreReply::kBadRequest);
      if (!WaitForKeys({*key}, std::chrono::milliseconds(*timeout_ms))) {
        return Reply(TcpStoreReply::kTimedOut);
      }
      std::lock_guard<std::mutex> lock(mutex_);
      return Reply(TcpStoreReply::kOk) + values_[*key];
    }
    case TcpStoreCommand::kWait: {
      absl::StatusOr<uint32_t> timeout_ms = reader.ReadU32();
      absl::StatusOr<uint32_t> count = reader.ReadU32();
      if (!timeout_ms.ok() || !count.ok()) return Reply(TcpStoreReply::kBadRequest);
      std::vector<std::string> keys;
      for (uint32_t i = 0; i < *count; ++i) {
        absl::StatusOr<std::string> key = reader.ReadString();
        if (!key.ok()) return Reply(TcpStoreReply::kBadRequest);
        keys.push_back(std::move(*key));
      }
      return Reply(WaitForKeys(keys, std::chrono::milliseconds(*timeout_ms))
                       ? TcpStoreReply::kOk
                       : TcpStoreReply::kTimedOut);
    }
  }
  return Reply(TcpStoreReply::kBadRequest);
}

}  // namespace flatfleet::collectives
