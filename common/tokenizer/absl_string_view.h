// Debian's Abseil is built with its own absl::string_view (not an alias of std::string_view), so
// std::string_view values are converted explicitly where Abseil functions take them.
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace flatfleet::tokenizer {

inline absl::string_view AbslView(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

}  // namespace flatfleet::tokenizer
