#include "security/server_credentials.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace flatfleet::security {
namespace {

std::string_view SliceView(const grpc_slice& slice) {
  return std::string_view(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(slice)),
                          GRPC_SLICE_LENGTH(slice));
}

// The C auth-processor callback: runs the policy on the call's metadata. On success the
// secret's header is consumed, so handlers never see it.
void ProcessAuthMetadata(void* state, grpc_auth_context* /*context*/, const grpc_metadata* md,
                         size_t num_md, grpc_process_auth_metadata_done_cb done, void* user_data) {
  const auto& policy = *static_cast<const MetadataAuthPolicy*>(state);
  std::string_view method;
  std::vector<std::string_view> values;
  std::vector<grpc_metadata> consumed;
  for (size_t i = 0; i < num_md; ++i) {
    const std::string_view key = SliceView(md[i].key);
    if (key == ":path") method = SliceView(md[i].value);
    if (key == policy.header) {
      values.push_back(SliceView(md[i].value));
      consumed.push_back(md[i]);
    }
  }
  const absl::Status status = CheckCallMetadata(policy, method, values);
  if (status.ok()) {
    done(user_data, consumed.data(), consumed.size(), nullptr, 0, GRPC_STATUS_OK, nullptr);
  } else {
    const std::string message(status.message());
    done(user_data, nullptr, 0, nullptr, 0, GRPC_STATUS_UNAUTHENTICATED, message.c_str());
  }
}

void DestroyPolicy(void* state) { delete static_cast<MetadataAuthPolicy*>(state); }

// Owns core server credentials; binding a port hands the server its own reference. They are
// made in the constructor, after the base class has initialised the gRPC library.
class CoreServerCredentials final : public grpc::ServerCredentials {
 public:
  explicit CoreServerCredentials(const ServerSecurity& security) {
    if (security.tls.has_value()) {
      grpc_ssl_pem_key_cert_pair pair{security.tls->private_key_pem.c_str(),
                                      security.tls->cert_chain_pem.c_str()};
      const bool mutual = !security.client_ca_pem.empty();
      // Core copies the PEM strings.
      credentials_ = grpc_ssl_server_credentials_create_ex(
          mutual ? security.client_ca_pem.c_str() : nullptr, &pair, 1,
          mutual ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                 : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
          nullptr);
    } else {
      credentials_ = grpc_insecure_server_credentials_create();
    }
    if (security.auth.enabled()) {
      grpc_auth_metadata_processor processor{ProcessAuthMetadata, DestroyPolicy,
                                             new MetadataAuthPolicy(security.auth)};
      grpc_server_credentials_set_auth_metadata_processor(credentials_, processor);
    }
  }
  ~CoreServerCredentials() override { grpc_server_credentials_release(credentials_); }

  void SetAuthMetadataProcessor(
      const std::shared_ptr<grpc::AuthMetadataProcessor>& /*processor*/) override {
    // Not used: the policy is installed at construction through the core API.
  }

 private:
  int AddPortToServer(const std::string& address, grpc_server* server) override {
    return grpc_server_add_http2_port(server, address.c_str(), credentials_);
  }

  grpc_server_credentials* credentials_ = nullptr;
};

}  // namespace

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const ServerSecurity& security) {
  return std::make_shared<CoreServerCredentials>(security);
}

}  // namespace flatfleet::security
