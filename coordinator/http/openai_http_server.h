// Serves OpenAiApi over HTTP with civetweb: the coordinator's --http-listen. Bearer tokens are
// the gRPC API's (--api-token-file): a call without an accepted "Authorization: Bearer" token
// gets 401. With --tls-cert it serves HTTPS only (and, when the settings hold a client CA, mutual
// TLS), with the gRPC API's identity; Debian 12's civetweb needs a compatibility library for
// OpenSSL 3 (coordinator/civetweb_ssl/), loaded from beside the binary. Request bodies are bounded
// before they are read (413 for a larger Content-Length). A thread expires batches whose completion
// window passed.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "coordinator/http/openai_api.h"
#include "security/transport_security.h"

struct mg_context;
struct mg_connection;

namespace flatfleet::coordinator::http {

class OpenAiHttpServer {
 public:
  // Listens on `address` ("host:port"; port 0 picks one). `api` must outlive the server.
  static absl::StatusOr<std::unique_ptr<OpenAiHttpServer>> Start(
      const std::string& address, const security::ServerSecurity& security, OpenAiApi* api,
      absl::Duration expiry_interval = absl::Seconds(1));
  ~OpenAiHttpServer();  // Stops listening and waits for requests in progress.

  OpenAiHttpServer(const OpenAiHttpServer&) = delete;
  OpenAiHttpServer& operator=(const OpenAiHttpServer&) = delete;

  int port() const { return port_; }
  bool tls() const { return security_.tls.has_value(); }

 private:
  OpenAiHttpServer(security::ServerSecurity security, OpenAiApi* api)
      : security_(std::move(security)), api_(api) {}

  static int HandleRequest(mg_connection* connection, void* server);
  void ExpiryLoop(absl::Duration interval);

  const security::ServerSecurity security_;
  OpenAiApi* const api_;
  mg_context* context_ = nullptr;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread expiry_thread_;
};

}  // namespace flatfleet::coordinator::http
