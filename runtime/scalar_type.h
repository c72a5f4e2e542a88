// Element types of runtime buffers: what activations, KV caches and prepared weights are stored as.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace flatfleet::runtime {

enum class ScalarType : uint8_t { kFloat32, kBFloat16, kFloat16, kInt8, kInt32, kUInt8, kFp8E4M3 };

size_t ScalarSize(ScalarType type);
const char* ScalarName(ScalarType type);  // "f32", "bf16", ...

}  // namespace flatfleet::runtime
