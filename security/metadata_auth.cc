#include "security/metadata_auth.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "security/constant_time.h"

namespace flatfleet::security {

MetadataAuthPolicy BearerTokenPolicy(std::vector<std::string> tokens) {
  MetadataAuthPolicy policy;
  policy.header = kAuthorizationHeader;
  policy.value_prefix = kBearerPrefix;
  policy.secrets = std::move(tokens);
  policy.description =
      "send 'authorization: Bearer <token>' (flatfleet clients: --api-token-file or "
      "FLATFLEET_API_TOKEN)";
  return policy;
}

MetadataAuthPolicy ClusterSecretPolicy(std::string secret) {
  MetadataAuthPolicy policy;
  policy.header = kClusterSecretHeader;
  policy.secrets = {std::move(secret)};
  policy.description =
      "the coordinator must be started with the same --cluster-secret-file as this worker";
  return policy;
}

absl::Status CheckCallMetadata(const MetadataAuthPolicy& policy, std::string_view method,
                               const std::vector<std::string_view>& values) {
  if (!policy.enabled()) return absl::OkStatus();
  for (const std::string& prefix : policy.exempt_method_prefixes) {
    if (method.substr(0, prefix.size()) == prefix) return absl::OkStatus();
  }
  if (values.empty()) {
    return absl::UnauthenticatedError(
        absl::StrFormat("missing credentials for %s: %s", method, policy.description));
  }
  if (values.size() > 1) {
    return absl::UnauthenticatedError(
        absl::StrFormat("more than one '%s' header on %s", policy.header, method));
  }
  std::string_view given = values.front();
  // RFC 7235: the scheme ("Bearer") is case-insensitive.
  if (!absl::StartsWithIgnoreCase(absl::string_view(given.data(), given.size()),
                                  policy.value_prefix)) {
    return absl::UnauthenticatedError(absl::StrFormat("malformed '%s' header on %s: %s",
                                                      policy.header, method, policy.description));
  }
  given.remove_prefix(policy.value_prefix.size());
  // Every secret is compared, so timing does not tell which one (if any) nearly matched.
  bool accepted = false;
  for (const std::string& secret : policy.secrets) {
    accepted = ConstantTimeEquals(given, secret) || accepted;
  }
  if (!accepted) {
    return absl::UnauthenticatedError(
        absl::StrFormat("invalid credentials for %s: %s", method, policy.description));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::security
