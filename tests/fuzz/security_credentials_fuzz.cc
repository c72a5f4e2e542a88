// Fuzzes what the security layer reads from outside: token files, PEM certificate and key
// files, and the credential header of incoming calls. Any bytes must give a status without
// crashing, and whatever is accepted must be consistent.
//
// The first byte picks the parser; the rest is its input. For keys and call metadata the input
// is split at the first NUL byte (certificate | key, method | header values by '\n').
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "security/constant_time.h"
#include "security/metadata_auth.h"
#include "security/secret_files.h"
#include "security/tls_files.h"

namespace {

std::pair<std::string_view, std::string_view> SplitAtNul(std::string_view text) {
  const size_t nul = text.find('\0');
  if (nul == std::string_view::npos) return {text, std::string_view()};
  return {text.substr(0, nul), text.substr(nul + 1)};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace security = flatfleet::security;
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0: {
      auto tokens = security::ParseTokens(input, "fuzz tokens");
      if (tokens.ok()) {
        if (tokens->empty()) std::abort();
        for (const std::string& token : *tokens) {
          if (!security::ValidateToken(token, "fuzz").ok()) std::abort();
          if (token.front() == '#') std::abort();
        }
      }
      break;
    }
    case 1:
      security::CheckCertificatesPem(std::string(input), "fuzz certificates").IgnoreError();
      break;
    case 2: {
      auto [cert, key] = SplitAtNul(input);
      security::CheckKeyMatchesCertificate(std::string(cert), std::string(key), "fuzz cert",
                                           "fuzz key")
          .IgnoreError();
      break;
    }
    case 3: {
      auto [method, header] = SplitAtNul(input);
      std::vector<std::string_view> values;
      size_t start = 0;
      while (start <= header.size() && !header.empty()) {
        const size_t end = std::min(header.find('\n', start), header.size());
        values.push_back(header.substr(start, end - start));
        start = end + 1;
      }
      const auto policy = security::BearerTokenPolicy({"fuzz-token", "second.token"});
      const bool accepted = security::CheckCallMetadata(policy, method, values).ok();
      const bool exempt = method.rfind("/grpc.health.v1.Health/", 0) == 0 ||
                          method.rfind("/grpc.reflection.", 0) == 0;
      // Outside the exempt services, acceptance means exactly one header naming a token.
      if (accepted && !exempt) {
        if (values.size() != 1 || values[0].size() < 7) std::abort();
        const std::string_view token = values[0].substr(7);
        if (!security::ConstantTimeEquals(token, "fuzz-token") &&
            !security::ConstantTimeEquals(token, "second.token")) {
          std::abort();
        }
      }
      break;
    }
  }
  return 0;
}
