#include "security/constant_time.h"

#include <cstddef>
#include <cstdint>

namespace flatfleet::security {

bool ConstantTimeEquals(std::string_view given, std::string_view expected) {
  // Volatile keeps the compiler from turning the loop into an early-exit comparison.
  volatile uint8_t difference = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    const uint8_t other = i < given.size() ? static_cast<uint8_t>(given[i]) : 0;
    difference = difference | (other ^ static_cast<uint8_t>(expected[i]));
  }
  return difference == 0;
}

}  // namespace flatfleet::security
