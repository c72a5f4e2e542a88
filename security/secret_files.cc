#include "security/secret_files.h"

#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace flatfleet::security {
namespace {

// Credentials are small; a bound keeps a wrong path (say, a model file) from being slurped.
constexpr std::streamoff kMaxCredentialFileBytes = 1 << 20;

}  // namespace

absl::StatusOr<std::string> ReadCredentialFile(const std::string& path, std::string_view what) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::NotFoundError(absl::StrFormat("cannot read %s %s", what, path));
  }
  file.seekg(0, std::ios::end);
  const std::streamoff size = file.tellg();
  if (size > kMaxCredentialFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s %s is %d bytes; credential files are at most %d", what, path,
                        static_cast<int64_t>(size), static_cast<int64_t>(kMaxCredentialFileBytes)));
  }
  file.seekg(0, std::ios::beg);
  std::ostringstream contents;
  contents << file.rdbuf();
  if (file.bad()) return absl::DataLossError(absl::StrFormat("error reading %s %s", what, path));
  return contents.str();
}

absl::Status ValidateToken(std::string_view token, std::string_view source) {
  for (const char c : token) {
    if (!absl::ascii_isgraph(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: tokens must be printable ASCII without spaces", source));
    }
  }
  if (token.empty()) return absl::InvalidArgumentError(absl::StrFormat("%s: empty token", source));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ParseTokens(std::string_view contents,
                                                     std::string_view source) {
  std::vector<std::string> tokens;
  int line_number = 0;
  for (absl::string_view line :
       absl::StrSplit(absl::string_view(contents.data(), contents.size()), '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    absl::Status valid = ValidateToken(std::string_view(line.data(), line.size()),
                                       absl::StrFormat("%s line %d", source, line_number));
    if (!valid.ok()) return valid;
    tokens.emplace_back(line);
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s holds no token", source));
  }
  return tokens;
}

absl::StatusOr<std::vector<std::string>> ReadTokenFile(const std::string& path,
                                                       std::string_view what) {
  absl::StatusOr<std::string> contents = ReadCredentialFile(path, what);
  if (!contents.ok()) return contents.status();
  return ParseTokens(*contents, absl::StrFormat("%s %s", what, path));
}

absl::StatusOr<std::string> ReadSingleToken(const std::string& path, std::string_view what) {
  absl::StatusOr<std::vector<std::string>> tokens = ReadTokenFile(path, what);
  if (!tokens.ok()) return tokens.status();
  if (tokens->size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s %s holds %d tokens; expected one", what, path, tokens->size()));
  }
  return std::move(tokens->front());
}

}  // namespace flatfleet::security
