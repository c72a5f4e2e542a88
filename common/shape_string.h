// "[2, 3]" spelling of tensor shapes for error messages.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace flatfleet {

inline std::string FormatShape(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

}  // namespace flatfleet
