#include "runtime/scalar_type.h"

namespace flatfleet::runtime {

size_t ScalarSize(ScalarType type) {
  switch (type) {
    case ScalarType::kFloat32:
    case ScalarType::kInt32:
      return 4;
    case ScalarType::kBFloat16:
    case ScalarType::kFloat16:
      return 2;
    case ScalarType::kInt8:
    case ScalarType::kUInt8:
    case ScalarType::kFp8E4M3:
      return 1;
  }
  return 0;
}

const char* ScalarName(ScalarType type) {
  switch (type) {
    case ScalarType::kFloat32:
      return "f32";
    case ScalarType::kBFloat16:
      return "bf16";
    case ScalarType::kFloat16:
      return "f16";
    case ScalarType::kInt8:
      return "i8";
    case ScalarType::kInt32:
      return "i32";
    case ScalarType::kUInt8:
      return "u8";
    case ScalarType::kFp8E4M3:
      return "fp8e4m3";
  }
  return "?";
}

}  // namespace flatfleet::runtime
