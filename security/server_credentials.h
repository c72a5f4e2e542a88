// gRPC server credentials for a ServerSecurity: plaintext or TLS (optionally requiring client
// certificates), with the metadata check (bearer token or shared secret) run by gRPC's
// server-auth filter before any handler. gRPC 1.51's C++ InsecureServerCredentials cannot take
// an auth processor, so the credentials are built from the core API for both cases.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"
#include "security/transport_security.h"

namespace flatfleet::security {

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const ServerSecurity& security);

}  // namespace flatfleet::security
