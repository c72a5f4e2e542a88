// Alignment checks of the kernels' argument validation (16-byte vector loads, cp.async, ldmatrix).
#pragma once

#include <cstdint>

namespace flatfleet::cuda {

inline bool Aligned16(const void* pointer) {
  return reinterpret_cast<uintptr_t>(pointer) % 16 == 0;
}

}  // namespace flatfleet::cuda
