// Client of TcpStoreServer, usable directly (Status API) or as Gloo's rendezvous Store (the gloo
// overrides throw gloo::IoException, which GlooCommunicator::Create turns back into a Status).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gloo/rendezvous/store.h"

namespace flatfleet::collectives {

class TcpStoreClient final : public gloo::rendezvous::Store {
 public:
  // Retries until the server accepts or `timeout` passes (workers may start before it).
  // `timeout` also bounds every later get/wait that does not name its own.
  static absl::StatusOr<std::unique_ptr<TcpStoreClient>> Connect(const std::string& host,
                                                                 uint16_t port,
                                                                 std::chrono::milliseconds timeout);
  ~TcpStoreClient() override;

  absl::Status Set(const std::string& key, const std::string& value);
  // Waits up to `timeout` for the key to appear.
  absl::StatusOr<std::string> Get(const std::string& key, std::chrono::milliseconds timeout);
  // DeadlineExceeded unless every key appears within `timeout`.
  absl::Status Wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout);

  // gloo::rendezvous::Store
  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override;

 private:
  TcpStoreClient(int fd, std::chrono::milliseconds timeout) : fd_(fd), timeout_(timeout) {}
  // Sends one request and returns the reply payload after its status byte.
  absl::StatusOr<std::string> Call(const std::string& request,
                                   std::chrono::milliseconds server_wait);

  const int fd_;
  const std::chrono::milliseconds timeout_;
  std::mutex mutex_;  // one request in flight per connection; guards broken_
  // Set after a socket error: a reply may still be in flight, so the stream cannot be trusted.
  bool broken_ = false;
};

}  // namespace flatfleet::collectives
