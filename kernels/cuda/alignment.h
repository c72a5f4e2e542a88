// Alignment checks of the kernels' argument validation (16-byte vector loads, cp.async, ldmatrix).
#pragma once

#include <cstdint>

namespace flatfleet::cuda {

inline bool AlignedTo(const void* pointer, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(pointer) % bytes == 0;
}
inline bool Aligned16(const void* pointer) { return AlignedTo(pointer, 16); }

}  // namespace flatfleet::cuda
