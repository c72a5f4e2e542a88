// Fuzzes the safetensors reader: any byte string must parse or fail cleanly, and every tensor
// of a file that parses must convert to float32.
#include <cstddef>
#include <cstdint>
#include <span>

#include "common/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  auto file = flatfleet::SafetensorsFile::Parse(bytes, "fuzz.safetensors");
  if (!file.ok()) return 0;
  for (const flatfleet::TensorInfo& tensor : (*file)->tensors()) {
    auto values = flatfleet::ToFloat32(tensor);
    if (!values.ok()) __builtin_trap();  // a validated tensor must always convert
    if (!tensor.shape.empty() && tensor.shape[0] > 0) {
      auto rows = flatfleet::ToFloat32Rows(tensor, tensor.shape[0] / 2, tensor.shape[0]);
      if (!rows.ok()) __builtin_trap();
    }
  }
  return 0;
}
