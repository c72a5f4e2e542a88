// Fuzzes quantization.json parsing (quant/quant_spec.h): any text must parse or fail cleanly,
// and a spec that parses must survive its own JSON round trip unchanged.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "quant/quant_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto spec = flatfleet::quant::ParseQuantSpec(text);
  if (!spec.ok()) return 0;
  auto again = flatfleet::quant::QuantSpecFromJson(flatfleet::quant::QuantSpecToJson(*spec));
  if (!again.ok() || !(*again == *spec)) __builtin_trap();
  return 0;
}
