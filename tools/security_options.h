// The security flags shared by several `flatfleet` commands (see docs/SECURITY.md): the API
// client's --tls-ca/--tls-server-name/--api-token-file, and the coordinator-worker
// --cluster-* flags.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "coordinator/server/batch_client.h"
#include "security/security_flags.h"

namespace flatfleet::tools {

inline void AddApiClientOptions(CLI::App* cmd, security::ApiClientFlags* flags) {
  cmd->add_option(
      "--tls-ca", flags->tls_ca,
      "Connect over TLS, trusting this PEM CA bundle for the coordinator's certificate");
  cmd->add_option("--tls-server-name", flags->tls_server_name,
                  "Name expected in the coordinator's certificate (default: the address's host)");
  cmd->add_option("--api-token-file", flags->api_token_file,
                  "File holding the API bearer token (default: $FLATFLEET_API_TOKEN)");
}

// A client of the coordinator at `address`, secured as the flags say.
inline absl::StatusOr<std::unique_ptr<coordinator::BatchClient>> ConnectToCoordinator(
    const std::string& address, const security::ApiClientFlags& flags) {
  absl::StatusOr<security::ChannelSecurity> channel_security =
      security::LoadApiClientSecurity(flags, std::getenv(security::kApiTokenEnvironmentVariable));
  if (!channel_security.ok()) return channel_security.status();
  return coordinator::BatchClient::Connect(address, *channel_security);
}

// `coordinator_side`: adds --cluster-tls-server-name, which only the connecting side uses.
inline void AddClusterOptions(CLI::App* cmd, security::ClusterFlags* flags, bool coordinator_side) {
  const char* peer = coordinator_side ? "workers" : "the coordinator";
  cmd->add_option("--cluster-tls-cert", flags->tls_cert,
                  std::string("PEM certificate this process presents to ") + peer +
                      " (mutual TLS; with --cluster-tls-key and --cluster-tls-ca)");
  cmd->add_option("--cluster-tls-key", flags->tls_key, "PEM private key of --cluster-tls-cert");
  cmd->add_option("--cluster-tls-ca", flags->tls_ca,
                  std::string("PEM CA bundle that must have signed the certificates of ") + peer);
  if (coordinator_side) {
    cmd->add_option("--cluster-tls-server-name", flags->tls_server_name,
                    "Name expected in every worker's certificate (default: each address's host)");
  }
  cmd->add_option("--cluster-secret-file", flags->secret_file,
                  "File holding the secret shared by the coordinator and its workers (sent as "
                  "call metadata; use with TLS or on loopback only)");
}

}  // namespace flatfleet::tools
