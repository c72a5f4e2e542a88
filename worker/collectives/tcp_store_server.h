// A small in-memory key-value store served over TCP, for Gloo rendezvous (the coordinator hosts
// it; tests run it on loopback). Each client connection gets a thread; waits are bounded by the
// timeout the client sends, and Stop() (or the destructor) ends every connection promptly.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace flatfleet::collectives {

class TcpStoreServer {
 public:
  // Listens on host:port; port 0 picks a free port (see port()).
  static absl::StatusOr<std::unique_ptr<TcpStoreServer>> Start(const std::string& host,
                                                               uint16_t port);
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;

  uint16_t port() const { return port_; }
  void Stop();

 private:
  TcpStoreServer(int listen_fd, uint16_t port);
  void AcceptLoop();
  void Serve(int fd);
  // Handles one request payload and returns the reply payload.
  std::string Handle(const std::string& request);
  bool WaitForKeys(const std::vector<std::string>& keys, std::chrono::milliseconds timeout);

  const int listen_fd_;
  const uint16_t port_;
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;

  std::mutex mutex_;  // guards everything below
  std::condition_variable key_added_;
  std::map<std::string, std::string> values_;
  std::set<int> connection_fds_;
  std::vector<std::thread> connection_threads_;
};

}  // namespace flatfleet::collectives
