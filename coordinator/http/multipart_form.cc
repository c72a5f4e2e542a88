#include "coordinator/http/multipart_form.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/str_cat.h"

namespace flatfleet::coordinator::http {
namespace {

// (Debian's absl has its own string_view, so these work on std::string_view directly.)
std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::vector<std::string_view> Split(std::string_view text, std::string_view separator) {
  std::vector<std::string_view> pieces;
  while (true) {
    const size_t at = text.find(separator);
    pieces.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return pieces;
    text.remove_prefix(at + separator.size());
  }
}

constexpr size_t kMaxBoundaryBytes = 70;  // RFC 2046.
constexpr size_t kMaxParts = 64;

// The value of `key` among "; key=value" parameters, unquoted (with \" escapes undone).
std::optional<std::string> HeaderParameter(std::string_view header, std::string_view key) {
  for (std::string_view parameter : Split(header, ";")) {
    parameter = Trim(parameter);
    const size_t equals = parameter.find('=');
    if (equals == std::string_view::npos) continue;
    if (!EqualsIgnoreCase(Trim(parameter.substr(0, equals)), key)) {
      continue;
    }
    std::string_view value = Trim(parameter.substr(equals + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
      std::string unescaped;
      for (size_t i = 0; i < value.size(); ++i) {
        if (value[i] == '\\' && i + 1 < value.size()) ++i;
        unescaped.push_back(value[i]);
      }
      return unescaped;
    }
    return std::string(value);
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::string> MultipartBoundary(std::string_view content_type) {
  const std::string_view media =
      Trim(content_type.substr(0, std::min(content_type.find(';'), content_type.size())));
  if (!EqualsIgnoreCase(media, "multipart/form-data")) {
    return absl::InvalidArgumentError(
        "the upload must be multipart/form-data (Content-Type), with a 'file' and a 'purpose' "
        "field");
  }
  std::optional<std::string> boundary = HeaderParameter(content_type, "boundary");
  if (!boundary || boundary->empty() || boundary->size() > kMaxBoundaryBytes) {
    return absl::InvalidArgumentError(
        "the multipart/form-data Content-Type has no valid boundary (1 to 70 characters)");
  }
  return *boundary;
}

absl::StatusOr<std::vector<FormPart>> ParseMultipartForm(std::string_view content_type,
                                                         std::string_view body) {
  absl::StatusOr<std::string> boundary = MultipartBoundary(content_type);
  if (!boundary.ok()) return boundary.status();
  const std::string delimiter = absl::StrCat("--", *boundary);
  const std::string next_delimiter = absl::StrCat("\r\n", delimiter);
  // The preamble (usually empty) ends at the first delimiter.
  size_t position = 0;
  if (body.starts_with(delimiter)) {
    position = delimiter.size();
  } else {
    const size_t first = body.find(next_delimiter);
    if (first == std::string_view::npos) {
      return absl::InvalidArgumentError("the multipart body has no part (boundary not found)");
    }
    position = first + next_delimiter.size();
  }
  std::vector<FormPart> parts;
  while (true) {
    const std::string_view rest = body.substr(position);
    if (rest.starts_with("--")) break;  // The closing delimiter.
    if (!rest.starts_with("\r\n")) {
      return absl::InvalidArgumentError("malformed multipart body: a delimiter line has junk");
    }
    position += 2;
    const size_t headers_end = body.find("\r\n\r\n", position);
    if (headers_end == std::string_view::npos) {
      return absl::InvalidArgumentError("malformed multipart body: a part's headers never end");
    }
    FormPart part;
    bool has_disposition = false;
    for (std::string_view header : Split(body.substr(position, headers_end - position), "\r\n")) {
      const size_t colon = header.find(':');
      if (colon == std::string_view::npos) {
        return absl::InvalidArgumentError("malformed multipart body: a part header has no ':'");
      }
      if (!EqualsIgnoreCase(Trim(header.substr(0, colon)), "content-disposition")) {
        continue;
      }
      const std::string_view value = header.substr(colon + 1);
      std::optional<std::string> name = HeaderParameter(value, "name");
      if (!name) {
        return absl::InvalidArgumentError(
            "malformed multipart body: a part's Content-Disposition has no name");
      }
      part.name = *std::move(name);
      part.filename = HeaderParameter(value, "filename");
      has_disposition = true;
    }
    if (!has_disposition) {
      return absl::InvalidArgumentError(
          "malformed multipart body: a part has no Content-Disposition header");
    }
    const size_t content_start = headers_end + 4;
    const size_t content_end = body.find(next_delimiter, content_start);
    if (content_end == std::string_view::npos) {
      return absl::InvalidArgumentError(
          "malformed multipart body: a part is not closed by the boundary (truncated upload?)");
    }
    part.content = body.substr(content_start, content_end - content_start);
    if (parts.size() == kMaxParts) {
      return absl::InvalidArgumentError(
          absl::StrCat("the multipart body has more than ", kMaxParts, " parts"));
    }
    parts.push_back(std::move(part));
    position = content_end + next_delimiter.size();
  }
  return parts;
}

}  // namespace flatfleet::coordinator::http
