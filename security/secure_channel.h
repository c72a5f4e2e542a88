// Client channels for a ChannelSecurity: plaintext or TLS (with a client certificate for
// mutual TLS), and fixed metadata (bearer token, cluster secret) added to every call by an
// interceptor, which works on plaintext channels too (call credentials would not).
#pragma once

#include <memory>
#include <string>

#include "grpcpp/channel.h"
#include "grpcpp/support/channel_arguments.h"
#include "security/transport_security.h"

namespace flatfleet::security {

std::shared_ptr<grpc::Channel> MakeSecureChannel(const std::string& address,
                                                 const ChannelSecurity& security,
                                                 grpc::ChannelArguments arguments = {});

}  // namespace flatfleet::security
