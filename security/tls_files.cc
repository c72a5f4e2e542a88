#include "security/tls_files.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "security/secret_files.h"

namespace flatfleet::security {
namespace {

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;

BioPtr MemoryBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// OpenSSL's reason for the last failure, and a clean error queue for the next caller.
std::string TakeOpensslError() {
  const unsigned long code = ERR_peek_last_error();
  const char* text = code != 0 ? ERR_reason_error_string(code) : nullptr;
  std::string reason = text != nullptr ? text : "no PEM data";
  ERR_clear_error();
  return reason;
}

// Refuses passphrase prompts: an encrypted key fails instead of reading the terminal.
int NoPassphrase(char*, int, int, void*) { return 0; }

// The certificates in `pem`, in order; an error when there are none or one is malformed.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(const std::string& pem,
                                                       const std::string& source) {
  BioPtr bio = MemoryBio(pem);
  std::vector<X509Ptr> certs;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr)) {
    certs.emplace_back(cert);
  }
  // Reading stops with "no start line" at the end of the data; anything else is a bad block.
  const unsigned long last = ERR_peek_last_error();
  const bool clean_end =
      ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
  if (certs.empty() || (last != 0 && !clean_end)) {
    const std::string reason = TakeOpensslError();
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s is not a PEM certificate file (%s)", source,
        certs.empty() && clean_end ? "no '-----BEGIN CERTIFICATE-----' block" : reason));
  }
  ERR_clear_error();
  return certs;
}

}  // namespace

absl::Status CheckCertificatesPem(const std::string& pem, const std::string& source) {
  return ParseCertificates(pem, source).status();
}

absl::Status CheckKeyMatchesCertificate(const std::string& cert_pem, const std::string& key_pem,
                                        const std::string& cert_source,
                                        const std::string& key_source) {
  absl::StatusOr<std::vector<X509Ptr>> certs = ParseCertificates(cert_pem, cert_source);
  if (!certs.ok()) return certs.status();
  BioPtr bio = MemoryBio(key_pem);
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s is not an unencrypted PEM private key (%s)", key_source, TakeOpensslError()));
  }
  if (X509_check_private_key(certs->front().get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrFormat("%s does not match the certificate in %s", key_source, cert_source));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> LoadCertificates(const std::string& path, const std::string& what) {
  absl::StatusOr<std::string> pem = ReadCredentialFile(path, what);
  if (!pem.ok()) return pem.status();
  absl::Status valid = CheckCertificatesPem(*pem, what + " " + path);
  if (!valid.ok()) return valid;
  return pem;
}

absl::StatusOr<TlsIdentity> LoadTlsIdentity(const std::string& cert_path,
                                            const std::string& key_path,
                                            const std::string& flag_prefix) {
  const std::string cert_what = flag_prefix + "-cert";
  const std::string key_what = flag_prefix + "-key";
  if (cert_path.empty() != key_path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s and %s go together", cert_what, key_what));
  }
  absl::StatusOr<std::string> cert_pem = ReadCredentialFile(cert_path, cert_what);
  if (!cert_pem.ok()) return cert_pem.status();
  const std::string cert_source = cert_what + " " + cert_path;
  absl::Status certs_valid = CheckCertificatesPem(*cert_pem, cert_source);
  if (!certs_valid.ok()) return certs_valid;
  absl::StatusOr<std::string> key_pem = ReadCredentialFile(key_path, key_what);
  if (!key_pem.ok()) return key_pem.status();
  absl::Status key_valid =
      CheckKeyMatchesCertificate(*cert_pem, *key_pem, cert_source, key_what + " " + key_path);
  if (!key_valid.ok()) return key_valid;
  return TlsIdentity{*std::move(cert_pem), *std::move(key_pem)};
}

}  // namespace flatfleet::security
