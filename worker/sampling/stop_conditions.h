// Stop strings: where the first of them starts in generated text.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace flatfleet::engine {

// Offset in `text` of the earliest occurrence of any stop string (empty strings ignored).
std::optional<size_t> FindStopString(std::string_view text, std::span<const std::string> stops);

}  // namespace flatfleet::engine
