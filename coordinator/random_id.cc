#include "coordinator/random_id.h"

#include <chrono>
#include <cstdint>
#include <random>

#include "absl/strings/str_format.h"

namespace flatfleet::coordinator {

std::string RandomHexId() {
  std::random_device device;
  std::mt19937_64 generator((static_cast<uint64_t>(device()) << 32) ^ device() ^
                            std::chrono::steady_clock::now().time_since_epoch().count());
  return absl::StrFormat("%016x%08x", generator(), static_cast<uint32_t>(generator()));
}

}  // namespace flatfleet::coordinator
