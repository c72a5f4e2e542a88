#include "security/secure_server.h"

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server_builder.h"
#include "security/server_credentials.h"

namespace flatfleet::security {

absl::StatusOr<StartedServer> StartSecureServer(const std::string& listen_address,
                                                const ServerSecurity& security,
                                                int max_message_bytes,
                                                std::span<grpc::Service* const> services) {
  // Both are process-wide switches that builders read; setting them again is harmless.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen_address, MakeServerCredentials(security), &port);
  builder.SetMaxReceiveMessageSize(max_message_bytes);
  builder.SetMaxSendMessageSize(max_message_bytes);
  for (grpc::Service* service : services) builder.RegisterService(service);
  StartedServer started;
  started.server = builder.BuildAndStart();
  if (started.server == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on '", listen_address, "' (bad address or port in use)"));
  }
  started.address = absl::StrCat(listen_address.substr(0, listen_address.rfind(':')), ":", port);
  return started;
}

}  // namespace flatfleet::security
