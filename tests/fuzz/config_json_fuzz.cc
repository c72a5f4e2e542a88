// Fuzzes config.json parsing: any text must parse or fail cleanly; a config that parses must
// have consistent attention sizes and yield rotary frequencies.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = flatfleet::ParseModelConfig(text, "fuzz/config.json");
  if (!config.ok()) return 0;
  if (config->head_dim <= 0 || config->num_attention_heads % config->num_key_value_heads != 0) {
    __builtin_trap();
  }
  if (config->head_dim <= 4096) {  // keep allocations small
    auto frequencies = flatfleet::RopeInverseFrequencies(*config);
    if (frequencies.size() != static_cast<size_t>(config->head_dim / 2)) __builtin_trap();
  }
  return 0;
}
