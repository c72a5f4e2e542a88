// Comparison of secrets whose running time does not depend on where they differ.
#pragma once

#include <string_view>

namespace flatfleet::security {

// True when `a` and `b` are equal. Runs over every byte of `expected` whatever `given` is, so
// timing reveals neither a matching prefix nor (beyond a difference) the expected length.
bool ConstantTimeEquals(std::string_view given, std::string_view expected);

}  // namespace flatfleet::security
