// multipart/form-data bodies (RFC 7578), as OpenAI clients send file uploads: each part's
// name, optional filename and content. The whole body is in memory (its size was bounded
// before it was read); parts are views into it.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace flatfleet::coordinator::http {

struct FormPart {
  std::string name;
  std::optional<std::string> filename;
  std::string_view content;
};

// The boundary of a "multipart/form-data; boundary=..." Content-Type (quoted or not).
absl::StatusOr<std::string> MultipartBoundary(std::string_view content_type);

// The parts of `body`, which must outlive them. Errors name what is malformed.
absl::StatusOr<std::vector<FormPart>> ParseMultipartForm(std::string_view content_type,
                                                         std::string_view body);

}  // namespace flatfleet::coordinator::http
