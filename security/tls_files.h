// TLS material read from PEM files and checked with OpenSSL before gRPC sees it, so that a
// wrong, unreadable or mismatched file fails at start-up with its name instead of at the
// first handshake with an opaque error.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace flatfleet::security {

// A certificate chain and its private key, both PEM.
struct TlsIdentity {
  std::string cert_chain_pem;
  std::string private_key_pem;
};

// Checks PEM text that should hold one or more certificates; `source` names it in errors
// (e.g. "--tls-ca PATH").
absl::Status CheckCertificatesPem(const std::string& pem, const std::string& source);

// Checks that `key_pem` is an unencrypted PEM private key matching the first certificate of
// `cert_pem` (already checked with CheckCertificatesPem).
absl::Status CheckKeyMatchesCertificate(const std::string& cert_pem, const std::string& key_pem,
                                        const std::string& cert_source,
                                        const std::string& key_source);

// One or more PEM certificates (a CA bundle). `what` names the role, e.g. "--tls-ca".
absl::StatusOr<std::string> LoadCertificates(const std::string& path, const std::string& what);

// A certificate chain and the key that matches its first certificate. `flag_prefix` names the
// options in errors, e.g. "--tls" for --tls-cert/--tls-key.
absl::StatusOr<TlsIdentity> LoadTlsIdentity(const std::string& cert_path,
                                            const std::string& key_path,
                                            const std::string& flag_prefix);

}  // namespace flatfleet::security
