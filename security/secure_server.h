// Starts a gRPC server the way every flatfleet server runs: standard health checking and
// reflection, the given transport security (server_credentials.h) and one message-size limit for
// both directions.
#pragma once

#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/server.h"
#include "security/transport_security.h"

namespace flatfleet::security {

struct StartedServer {
  std::unique_ptr<grpc::Server> server;
  std::string address;  // HOST:PORT with the port actually bound (port 0 picks a free one)
};

absl::StatusOr<StartedServer> StartSecureServer(const std::string& listen_address,
                                                const ServerSecurity& security,
                                                int max_message_bytes,
                                                std::span<grpc::Service* const> services);

}  // namespace flatfleet::security
