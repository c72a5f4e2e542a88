// Row-wise elementwise kernels: grid.y walks rows (grid-stride beyond 65535), grid.x the columns
// of a row, so a single decode row still spreads over many SMs.
#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/activation_ops_launch.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxGridY = 65535;
constexpr int kVec = 8;  // elements per 16-byte bfloat16 vector

__device__ __forceinline__ float Widen(uint16_t bits) {
  return __uint_as_float(static_cast<uint32_t>(bits) << 16);
}
__device__ __forceinline__ uint16_t Narrow(float v) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

// cpu::SiluMul: g / (1 + exp(-g)) * u, IEEE operations (no fast-math exp or division).
__device__ __forceinline__ float SiluTimes(float g, float u) {
  return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
}

// One element of each op (the scalar kernel and the vector kernel's inner loop share these).
struct SiluMulOp {
  __device__ static void Apply(const uint16_t* in_row, uint16_t* out_row, int64_t cols, int64_t i) {
    out_row[i] = Narrow(SiluTimes(Widen(in_row[i]), Widen(in_row[cols + i])));
  }
};
struct CastBf16ToF32Op {
  __device__ static void Apply(const uint16_t* in_row, float* out_row, int64_t, int64_t i) {
    out_row[i] = Widen(in_row[i]);
  }
};
struct CastF32ToBf16Op {
  __device__ static void Apply(const float* in_row, uint16_t* out_row, int64_t, int64_t i) {
    out_row[i] = Narrow(in_row[i]);
  }
};
struct AddBf16ToF32Op {
  __device__ static void Apply(const uint16_t* in_row, float* out_row, int64_t, int64_t i) {
    out_row[i] = __fadd_rn(out_row[i], Widen(in_row[i]));
  }
};

template <typename Op, typename In, typename Out>
__global__ void __launch_bounds__(kThreads)
    ElementwiseScalarKernel(const In* __restrict__ in, int64_t in_stride, Out* __restrict__ out,
                            int64_t out_stride, int64_t rows, int64_t cols) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const In* in_row = in + r * in_stride;
    Out* out_row = out + r * out_stride;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < cols;
         i += static_cast<int64_t>(gridDim.x) * kThreads) {
      Op::Apply(in_row, out_row, cols, i);
    }
  }
}

// Eight elements per thread step, 16-byte loads and stores (one or two per operand). The values
// pass through registers and the same scalar Apply works on them at offset 0.
template <typename T>
struct alignas(16) Vec8 {
  T v[kVec];
};

template <typename Op, typename In, typename Out>
__global__ void __launch_bounds__(kThreads)
    ElementwiseVec8Kernel(const In* __restrict__ in, int64_t in_stride, Out* __restrict__ out,
                          int64_t out_stride, int64_t rows, int64_t cols) {
  constexpr bool kGated = std::is_same_v<Op, SiluMulOp>;
  const int64_t vectors = cols / kVec;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const In* in_row = in + r * in_stride;
    Out* out_row = out + r * out_stride;
    for (int64_t j = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; j < vectors;
         j += static_cast<int64_t>(gridDim.x) * kThreads) {
      // Local copies laid out as [first operand | second operand] so Apply's (cols + i) indexing
      // finds the gate's partner at kVec.
      alignas(16) In local_in[2 * kVec];
      *reinterpret_cast<Vec8<In>*>(local_in) = reinterpret_cast<const Vec8<In>*>(in_row)[j];
      if constexpr (kGated) {
        *reinterpret_cast<Vec8<In>*>(local_in + kVec) =
            reinterpret_cast<const Vec8<In>*>(in_row + cols)[j];
      }
      Vec8<Out> local_out;
      if constexpr (std::is_same_v<Op, AddBf16ToF32Op>) {
        local_out = reinterpret_cast<const Vec8<Out>*>(out_row)[j];
      }
#pragma unroll
      for (int e = 0; e < kVec; ++e) Op::Apply(local_in, local_out.v, kVec, e);
      reinterpret_cast<Vec8<Out>*>(out_row)[j] = local_out;
    }
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename Op, typename In, typename Out>
cudaError_t Launch(const ElementwiseParams& p, cudaStream_t stream) {
  const bool vec = !p.force_scalar && p.cols % kVec == 0 && p.in_row_stride % kVec == 0 &&
                   p.out_row_stride % kVec == 0 && Aligned16(p.in) && Aligned16(p.out);
  const int64_t units = vec ? p.cols / kVec : p.cols;
  const int64_t blocks_x = (units + kThreads - 1) / kThreads;
  const dim3 grid(static_cast<unsigned>(blocks_x),
                  static_cast<unsigned>(p.rows < kMaxGridY ? p.rows : kMaxGridY));
  const auto* in = static_cast<const In*>(p.in);
  auto* out = static_cast<Out*>(p.out);
  if (vec) {
    ElementwiseVec8Kernel<Op, In, Out>
        <<<grid, kThreads, 0, stream>>>(in, p.in_row_stride, out, p.out_row_stride, p.rows, p.cols);
  } else {
    ElementwiseScalarKernel<Op, In, Out>
        <<<grid, kThreads, 0, stream>>>(in, p.in_row_stride, out, p.out_row_stride, p.rows, p.cols);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchElementwise(const ElementwiseParams& p, cudaStream_t stream) {
  if (p.rows <= 0 || p.cols <= 0) return cudaSuccess;
  switch (p.op) {
    case ElementwiseOp::kSiluMul:
      return Launch<SiluMulOp, uint16_t, uint16_t>(p, stream);
    case ElementwiseOp::kCastBf16ToF32:
      return Launch<CastBf16ToF32Op, uint16_t, float>(p, stream);
    case ElementwiseOp::kCastF32ToBf16:
      return Launch<CastF32ToBf16Op, float, uint16_t>(p, stream);
    case ElementwiseOp::kAddBf16ToF32:
      return Launch<AddBf16ToF32Op, uint16_t, float>(p, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace flatfleet::cuda::internal
