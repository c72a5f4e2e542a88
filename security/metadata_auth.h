// The check a server applies to each call's metadata: a header that must carry one of the
// accepted secrets (an API bearer token, or the coordinator-worker shared secret). Health
// checking and reflection stay open so that probes and tools work without credentials.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace flatfleet::security {

// The public API's header: "authorization: Bearer <token>".
inline constexpr char kAuthorizationHeader[] = "authorization";
inline constexpr char kBearerPrefix[] = "Bearer ";
// What the coordinator sends to workers when a cluster secret is configured.
inline constexpr char kClusterSecretHeader[] = "x-flatfleet-cluster-secret";

// Methods reachable without credentials: the standard health service (load balancers and
// Kubernetes probes carry no token) and reflection (it describes the API, which is public).
inline const std::vector<std::string>& DefaultExemptMethodPrefixes() {
  static const std::vector<std::string> prefixes = {"/grpc.health.v1.Health/",
                                                    "/grpc.reflection.v1alpha.ServerReflection/",
                                                    "/grpc.reflection.v1.ServerReflection/"};
  return prefixes;
}

struct MetadataAuthPolicy {
  std::string header;                // Lower case, as gRPC delivers it.
  std::string value_prefix;          // E.g. "Bearer "; stripped before comparing.
  std::vector<std::string> secrets;  // Any one of them is accepted.
  // Said in errors: how the client should provide the secret.
  std::string description;
  std::vector<std::string> exempt_method_prefixes = DefaultExemptMethodPrefixes();

  bool enabled() const { return !secrets.empty(); }
};

// A policy for `authorization: Bearer <token>` accepting `tokens`.
MetadataAuthPolicy BearerTokenPolicy(std::vector<std::string> tokens);
// A policy for the cluster secret header accepting `secret`.
MetadataAuthPolicy ClusterSecretPolicy(std::string secret);

// OK when `method` (the ":path", e.g. "/flatfleet.v1.BatchService/GetBatch") is exempt or
// `values` (every value of the policy's header on the call) holds exactly one accepted secret;
// UNAUTHENTICATED otherwise. Secrets are compared in constant time.
absl::Status CheckCallMetadata(const MetadataAuthPolicy& policy, std::string_view method,
                               const std::vector<std::string_view>& values);

}  // namespace flatfleet::security
