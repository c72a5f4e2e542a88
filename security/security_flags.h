// The command-line security options of each endpoint, and the loading of their files into
// ServerSecurity / ChannelSecurity. One place for the rules (which flags go together), so that
// every command reports the same clear errors.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "security/transport_security.h"

namespace flatfleet::security {

// Environment variable a client reads its API token from when --api-token-file is not given.
inline constexpr char kApiTokenEnvironmentVariable[] = "FLATFLEET_API_TOKEN";

// `serve coordinator`'s public side: --tls-cert, --tls-key, --api-token-file.
struct ApiServerFlags {
  std::string tls_cert;
  std::string tls_key;
  std::string api_token_file;  // One or more tokens, one per line.
};

// The CLI clients: --tls-ca, --tls-server-name, --api-token-file (or FLATFLEET_API_TOKEN).
struct ApiClientFlags {
  std::string tls_ca;
  std::string tls_server_name;
  std::string api_token_file;
};

// Coordinator-worker traffic, on both sides: --cluster-tls-cert/-key/-ca (all three: mutual
// TLS), --cluster-tls-server-name (coordinator only) and --cluster-secret-file.
struct ClusterFlags {
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
  std::string tls_server_name;
  std::string secret_file;
};

absl::StatusOr<ServerSecurity> LoadApiServerSecurity(const ApiServerFlags& flags);
// `token_from_environment`: the FLATFLEET_API_TOKEN value, used only without --api-token-file.
absl::StatusOr<ChannelSecurity> LoadApiClientSecurity(const ApiClientFlags& flags,
                                                      const char* token_from_environment);
// The worker's server.
absl::StatusOr<ServerSecurity> LoadClusterServerSecurity(const ClusterFlags& flags);
// The coordinator's channels to workers.
absl::StatusOr<ChannelSecurity> LoadClusterClientSecurity(const ClusterFlags& flags);

// True for "127.x.y.z:port", "[::1]:port" and "localhost:port": where a secret may travel
// without TLS.
bool IsLoopbackAddress(const std::string& address);

}  // namespace flatfleet::security
