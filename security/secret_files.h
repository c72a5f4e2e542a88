// Reading the small files that hold credentials: certificates, keys, tokens, shared secrets.
// Every error names the file and what it was meant to hold.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace flatfleet::security {

// The whole file. `what` says what it holds ("API token file"), for the error message.
absl::StatusOr<std::string> ReadCredentialFile(const std::string& path, std::string_view what);

// Tokens, one per line; surrounding whitespace, blank lines and '#' comments are ignored. Fails
// when the file holds none, or a token with inner whitespace or non-printable characters (which
// could not travel in a header).
absl::StatusOr<std::vector<std::string>> ReadTokenFile(const std::string& path,
                                                       std::string_view what);

// The same for text already read; `source` names it in errors (e.g. "--api-token-file PATH").
absl::StatusOr<std::vector<std::string>> ParseTokens(std::string_view contents,
                                                     std::string_view source);

// A single token (the first and only one of ReadTokenFile).
absl::StatusOr<std::string> ReadSingleToken(const std::string& path, std::string_view what);

// Checks a token taken from elsewhere (an environment variable named `source`).
absl::Status ValidateToken(std::string_view token, std::string_view source);

}  // namespace flatfleet::security
