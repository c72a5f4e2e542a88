// Fuzzes quantization.json (quantized checkpoint manifest) parsing: any text must parse or fail
// cleanly; a manifest that parses must satisfy the invariants the loader relies on and survive a
// serialize / parse round trip unchanged.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "quant/quantized_checkpoint_manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto manifest = flatfleet::quant::ParseQuantizedCheckpointManifest(text);
  if (!manifest.ok()) return 0;
  if (manifest->tensor_files.empty()) __builtin_trap();
  for (const auto& layer : manifest->layers) {
    int64_t rows = 0;
    for (int64_t r : layer.stacked_rows) rows += r;
    const int64_t cols =
        layer.transformed_features - static_cast<int64_t>(layer.outlier_channels.size());
    if (rows != layer.out_features || cols <= 0 || layer.weight_format.bits < 2 ||
        layer.weight_format.bits > 8 ||
        (layer.weight_format.group_size > 0 && cols % layer.weight_format.group_size != 0)) {
      __builtin_trap();
    }
  }
  const std::string serialized = flatfleet::quant::SerializeQuantizedCheckpointManifest(*manifest);
  auto again = flatfleet::quant::ParseQuantizedCheckpointManifest(serialized);
  if (!again.ok()) __builtin_trap();
  if (flatfleet::quant::SerializeQuantizedCheckpointManifest(*again) != serialized) {
    __builtin_trap();
  }
  return 0;
}
