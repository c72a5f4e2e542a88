#include "security/security_flags.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "security/secret_files.h"

namespace flatfleet::security {
namespace {

// Mutual TLS between coordinator and workers needs an identity and a CA on each side.
absl::Status CheckClusterTlsComplete(const ClusterFlags& flags) {
  const int given = !flags.tls_cert.empty() + !flags.tls_key.empty() + !flags.tls_ca.empty();
  if (given != 0 && given != 3) {
    return absl::InvalidArgumentError(
        "--cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca go together (mutual TLS)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ServerSecurity> LoadApiServerSecurity(const ApiServerFlags& flags) {
  ServerSecurity security;
  if (!flags.tls_cert.empty() || !flags.tls_key.empty()) {
    absl::StatusOr<TlsIdentity> identity = LoadTlsIdentity(flags.tls_cert, flags.tls_key, "--tls");
    if (!identity.ok()) return identity.status();
    security.tls = *std::move(identity);
  }
  if (!flags.api_token_file.empty()) {
    absl::StatusOr<std::vector<std::string>> tokens =
        ReadTokenFile(flags.api_token_file, "--api-token-file");
    if (!tokens.ok()) return tokens.status();
    security.auth = BearerTokenPolicy(*std::move(tokens));
  }
  return security;
}

absl::StatusOr<ChannelSecurity> LoadApiClientSecurity(const ApiClientFlags& flags,
                                                      const char* token_from_environment) {
  ChannelSecurity security;
  if (!flags.tls_ca.empty()) {
    absl::StatusOr<std::string> ca = LoadCertificates(flags.tls_ca, "--tls-ca");
    if (!ca.ok()) return ca.status();
    security.server_ca_pem = *std::move(ca);
    security.server_name_override = flags.tls_server_name;
  } else if (!flags.tls_server_name.empty()) {
    return absl::InvalidArgumentError("--tls-server-name needs --tls-ca");
  }
  std::string token;
  if (!flags.api_token_file.empty()) {
    absl::StatusOr<std::string> read = ReadSingleToken(flags.api_token_file, "--api-token-file");
    if (!read.ok()) return read.status();
    token = *std::move(read);
  } else if (token_from_environment != nullptr && *token_from_environment != '\0') {
    token = token_from_environment;
    absl::Status valid = ValidateToken(token, kApiTokenEnvironmentVariable);
    if (!valid.ok()) return valid;
  }
  if (!token.empty()) {
    security.call_metadata.emplace(kAuthorizationHeader, absl::StrCat(kBearerPrefix, token));
  }
  return security;
}

absl::StatusOr<ServerSecurity> LoadClusterServerSecurity(const ClusterFlags& flags) {
  absl::Status complete = CheckClusterTlsComplete(flags);
  if (!complete.ok()) return complete;
  ServerSecurity security;
  if (!flags.tls_cert.empty()) {
    absl::StatusOr<TlsIdentity> identity =
        LoadTlsIdentity(flags.tls_cert, flags.tls_key, "--cluster-tls");
    if (!identity.ok()) return identity.status();
    security.tls = *std::move(identity);
    absl::StatusOr<std::string> ca = LoadCertificates(flags.tls_ca, "--cluster-tls-ca");
    if (!ca.ok()) return ca.status();
    security.client_ca_pem = *std::move(ca);
  }
  if (!flags.secret_file.empty()) {
    absl::StatusOr<std::string> secret =
        ReadSingleToken(flags.secret_file, "--cluster-secret-file");
    if (!secret.ok()) return secret.status();
    security.auth = ClusterSecretPolicy(*std::move(secret));
  }
  return security;
}

absl::StatusOr<ChannelSecurity> LoadClusterClientSecurity(const ClusterFlags& flags) {
  absl::Status complete = CheckClusterTlsComplete(flags);
  if (!complete.ok()) return complete;
  ChannelSecurity security;
  if (!flags.tls_cert.empty()) {
    absl::StatusOr<TlsIdentity> identity =
        LoadTlsIdentity(flags.tls_cert, flags.tls_key, "--cluster-tls");
    if (!identity.ok()) return identity.status();
    security.client_identity = *std::move(identity);
    absl::StatusOr<std::string> ca = LoadCertificates(flags.tls_ca, "--cluster-tls-ca");
    if (!ca.ok()) return ca.status();
    security.server_ca_pem = *std::move(ca);
    security.server_name_override = flags.tls_server_name;
  } else if (!flags.tls_server_name.empty()) {
    return absl::InvalidArgumentError("--cluster-tls-server-name needs --cluster-tls-ca");
  }
  if (!flags.secret_file.empty()) {
    absl::StatusOr<std::string> secret =
        ReadSingleToken(flags.secret_file, "--cluster-secret-file");
    if (!secret.ok()) return secret.status();
    security.call_metadata.emplace(kClusterSecretHeader, *std::move(secret));
  }
  return security;
}

bool IsLoopbackAddress(const std::string& address) {
  const std::string host = address.substr(0, address.rfind(':'));
  return absl::StartsWith(host, "127.") || host == "[::1]" || host == "localhost" ||
         host == "ipv4:127.0.0.1" || host == "ipv6:[::1]";
}

}  // namespace flatfleet::security
