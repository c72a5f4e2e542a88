#include "security/secure_channel.h"

#include <utility>
#include <vector>

#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/client_interceptor.h"

namespace flatfleet::security {
namespace {

using grpc::experimental::InterceptionHookPoints;

class AddMetadataInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit AddMetadataInterceptor(const std::multimap<std::string, std::string>* metadata)
      : metadata_(metadata) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      std::multimap<std::string, std::string>* sent = methods->GetSendInitialMetadata();
      sent->insert(metadata_->begin(), metadata_->end());
    }
    methods->Proceed();
  }

 private:
  const std::multimap<std::string, std::string>* const metadata_;
};

// Owned by the channel, so the metadata lives as long as any call on it.
class AddMetadataFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit AddMetadataFactory(std::multimap<std::string, std::string> metadata)
      : metadata_(std::move(metadata)) {}

  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* /*info*/) override {
    return new AddMetadataInterceptor(&metadata_);
  }

 private:
  const std::multimap<std::string, std::string> metadata_;
};

}  // namespace

std::shared_ptr<grpc::Channel> MakeSecureChannel(const std::string& address,
                                                 const ChannelSecurity& security,
                                                 grpc::ChannelArguments arguments) {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (security.server_ca_pem.has_value()) {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = *security.server_ca_pem;
    if (security.client_identity.has_value()) {
      options.pem_private_key = security.client_identity->private_key_pem;
      options.pem_cert_chain = security.client_identity->cert_chain_pem;
    }
    credentials = grpc::SslCredentials(options);
    if (!security.server_name_override.empty()) {
      arguments.SetSslTargetNameOverride(security.server_name_override);
    }
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  if (!security.call_metadata.empty()) {
    factories.push_back(std::make_unique<AddMetadataFactory>(security.call_metadata));
  }
  return grpc::experimental::CreateCustomChannelWithInterceptors(address, credentials, arguments,
                                                                 std::move(factories));
}

}  // namespace flatfleet::security
