// Element type of a GEMM output (and of tensors that feed or follow one) in device memory.
#pragma once

namespace flatfleet::cuda {

enum class GemmElementType { kBf16, kFloat32 };

}  // namespace flatfleet::cuda
