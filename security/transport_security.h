// How a gRPC endpoint secures its transport and authenticates calls, as loaded from the
// command-line flags. Plain data (no gRPC types), so option structs can hold it cheaply; the
// gRPC credentials are made from it in server_credentials.h and secure_channel.h.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "security/metadata_auth.h"
#include "security/tls_files.h"

namespace flatfleet::security {

struct ServerSecurity {
  // Without an identity the server speaks plaintext.
  std::optional<TlsIdentity> tls;
  // With `tls`: clients must present a certificate signed by this CA bundle (mutual TLS).
  std::string client_ca_pem;
  // Checked on every call but health and reflection; disabled when it has no secrets.
  MetadataAuthPolicy auth;
};

struct ChannelSecurity {
  // TLS when set: the CA bundle that must have signed the server's certificate.
  std::optional<std::string> server_ca_pem;
  // The name checked against the server's certificate instead of the address's host.
  std::string server_name_override;
  // With TLS: the certificate presented to servers that require one (mutual TLS).
  std::optional<TlsIdentity> client_identity;
  // Added to every call, e.g. {"authorization", "Bearer ..."}.
  std::multimap<std::string, std::string> call_metadata;
};

}  // namespace flatfleet::security
