// GPTQ's element-wise kernels (the Cholesky steps and the block GEMM run in cuSOLVER / cuBLAS,
// gptq_solver.cc). The quantizing arithmetic repeats quant/gptq_quantizer.cc and QuantizeRtn
// operation by operation with explicitly rounded intrinsics (no FMA contraction), so that a code
// can differ from the CPU's only where a value computed through a differently ordered sum
// (cuBLAS's block update) lands on the other side of a rounding boundary.
#include <cuda_fp16.h>

#include <cmath>

#include "kernels/cuda/gptq_solver_launch.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kRowThreads = 64;  // one thread per weight row: few rows per CTA, more CTAs

__global__ void CheckHessianKernel(const double* h, int64_t count, int* flags) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    if (!isfinite(h[i])) atomicOr(flags, kGptqNonFiniteHessian);
  }
}

// One thread: the diagonal's sum must be in the CPU's order for an equal damped H.
__global__ void DampenKernel(double* h, int64_t k, double damp, int8_t* dead) {
  double mean = 0.0;
  for (int64_t i = 0; i < k; ++i) {
    double& d = h[i * k + i];
    dead[i] = d <= 0.0 ? 1 : 0;
    if (d <= 0.0) d = 1.0;
    mean = __dadd_rn(mean, d);
  }
  mean = __ddiv_rn(mean, static_cast<double>(k));
  const double add = __dmul_rn(damp, mean);
  for (int64_t i = 0; i < k; ++i) h[i * k + i] = __dadd_rn(h[i * k + i], add);
}

// 32 x 32 tiles through shared memory so both sides are coalesced.
__global__ void TransposeWeightKernel(const float* weight, int64_t n, int64_t k, const int8_t* dead,
                                      double* wt) {
  __shared__ float tile[32][33];
  const int64_t col0 = blockIdx.x * int64_t{32}, row0 = blockIdx.y * int64_t{32};
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t r = row0 + i, c = col0 + threadIdx.x;
    if (r < n && c < k) tile[i][threadIdx.x] = weight[r * k + c];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t c = col0 + i, r = row0 + threadIdx.x;
    if (r < n && c < k) wt[c * n + r] = dead[c] ? 0.0 : static_cast<double>(tile[threadIdx.x][i]);
  }
}

// RTN's scale and zero point of a group given its float range [lo, hi] (both include 0),
// exactly as QuantizeRtn: false when the scale exceeds FP16.
__device__ bool GroupScale(float lo, float hi, const GptqFormatParams& f, uint16_t* scale_bits,
                           float* scale, int32_t* zero) {
  lo = __fmul_rn(lo, f.clip_ratio);
  hi = __fmul_rn(hi, f.clip_ratio);
  const float absmax = -lo < hi ? hi : -lo;  // std::max(-lo, hi)
  const float exact = f.balanced ? __fdiv_rn(absmax, static_cast<float>(f.qmax - f.qmin))
                      : f.symmetric
                          ? __fdiv_rn(absmax, static_cast<float>(f.qmax))
                          : __fdiv_rn(__fsub_rn(hi, lo), static_cast<float>(f.qmax - f.qmin));
  uint16_t bits = 0x3c00;  // 1.0 for a group of zeros
  bool ok = true;
  if (exact > 0.0f) {
    bits = __half_as_ushort(__float2half_rn(exact));
    if (__half2float(__ushort_as_half(bits)) < exact) ++bits;  // round up to FP16
    if (bits >= 0x7c00) {
      ok = false;
      bits = 0x3c00;
    }
  }
  *scale_bits = bits;
  *scale = __half2float(__ushort_as_half(bits));
  int32_t z = 0;
  if (!f.symmetric) {
    z = f.qmin + __float2int_rn(__fdiv_rn(-lo, *scale));
    z = z < f.qmin ? f.qmin : (z > f.qmax ? f.qmax : z);
  }
  *zero = z;
  return ok;
}

__device__ void ExtendRange(float v, float* lo, float* hi) {
  *lo = v < *lo ? v : *lo;  // std::min(lo, v)
  *hi = *hi < v ? v : *hi;  // std::max(hi, v)
}

__global__ void PerChannelParametersKernel(const double* wt, int64_t n, int64_t k,
                                           GptqFormatParams format, uint16_t* scales,
                                           int8_t* zero_points, int* flags) {
  const int64_t r = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (r >= n) return;
  float lo = 0.0f, hi = 0.0f;
  bool finite = true;
  for (int64_t j = 0; j < k; ++j) {
    const float v = static_cast<float>(wt[j * n + r]);
    finite = finite && isfinite(v);
    ExtendRange(v, &lo, &hi);
  }
  if (!finite) {
    atomicOr(flags, kGptqNonFiniteWeight);
    lo = hi = 0.0f;
  }
  uint16_t bits;
  float scale;
  int32_t zero;
  if (!GroupScale(lo, hi, format, &bits, &scale, &zero)) atomicOr(flags, kGptqScaleOverflow);
  scales[r] = bits;
  if (!format.symmetric) zero_points[r] = static_cast<int8_t>(zero);
}

__global__ void QuantizeBlockKernel(double* wt, int64_t n, int64_t k, const double* u, int64_t b1,
                                    int64_t b2, GptqFormatParams f, int8_t* codes, uint16_t* scales,
                                    int8_t* zero_points, double* e, float* pre_rounding,
                                    int* flags) {
  const int64_t r = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (r >= n) return;
  int64_t loaded_group = -1;
  float scale = 1.0f;
  int32_t zero = 0;
  for (int64_t p = b1; p < b2; ++p) {
    const int64_t g = p / f.group_size;
    if (!f.per_channel && p == g * f.group_size) {
      // The group's columns as updated so far; those past the block still lack this block's
      // errors (lazy update): add them in the CPU's order.
      float lo = 0.0f, hi = 0.0f;
      bool finite = true;
      for (int64_t j = p; j < p + f.group_size; ++j) {
        double value = wt[j * n + r];
        if (j >= b2) {
          for (int64_t q = b1; q < p; ++q) {
            value = __dsub_rn(value, __dmul_rn(e[(q - b1) * n + r], u[q + j * k]));
          }
        }
        const float v = static_cast<float>(value);
        finite = finite && isfinite(v);
        ExtendRange(v, &lo, &hi);
      }
      if (!finite) {
        atomicOr(flags, kGptqNonFiniteWeight);
        lo = hi = 0.0f;
      }
      uint16_t bits;
      if (!GroupScale(lo, hi, f, &bits, &scale, &zero)) atomicOr(flags, kGptqScaleOverflow);
      scales[r * f.groups + g] = bits;
      if (!f.symmetric) zero_points[r * f.groups + g] = static_cast<int8_t>(zero);
      loaded_group = g;
    } else if (g != loaded_group) {
      scale = __half2float(__ushort_as_half(scales[r * f.groups + g]));
      zero = f.symmetric ? 0 : zero_points[r * f.groups + g];
      loaded_group = g;
    }
    const double w = wt[p * n + r];
    const float in_steps = __fdiv_rn(static_cast<float>(w), scale);
    if (pre_rounding != nullptr) pre_rounding[r * k + p] = in_steps;
    int32_t code = __float2int_rn(in_steps) + zero;
    code = code < f.qmin ? f.qmin : (code > f.qmax ? f.qmax : code);
    codes[r * k + p] = static_cast<int8_t>(code);
    const double dequantized =
        __dmul_rn(static_cast<double>(scale), static_cast<double>(code - zero));
    const double error = __ddiv_rn(__dsub_rn(w, dequantized), u[p + p * k]);
    e[(p - b1) * n + r] = error;
    if (error == 0.0) continue;
    for (int64_t j = p + 1; j < b2; ++j) {
      wt[j * n + r] = __dsub_rn(wt[j * n + r], __dmul_rn(error, u[p + j * k]));
    }
  }
}

__global__ void WidenKernel(const float* x, int64_t count, double* y) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    y[i] = static_cast<double>(x[i]);
  }
}

__global__ void MirrorKernel(double* a, int64_t k) {
  __shared__ double tile[32][33];
  // Tile (bx, by) of the lower triangle (row block by >= column block bx) takes the transpose of
  // tile (by, bx) of the upper one.
  const int64_t bx = blockIdx.x, by = blockIdx.y;
  if (by < bx) return;
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    // Read upper element (row bx*32 + x, col by*32 + i): column-major a[row + col * k].
    const int64_t row = bx * 32 + threadIdx.x, col = by * 32 + i;
    if (row < k && col < k) tile[i][threadIdx.x] = a[row + col * k];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    // Write lower element (row by*32 + x, col bx*32 + i) = upper (col bx*32 + i, row by*32 + x).
    const int64_t row = by * 32 + threadIdx.x, col = bx * 32 + i;
    if (row < k && col < k && row > col) a[row + col * k] = tile[threadIdx.x][i];
  }
}

int GridFor(int64_t count, int threads) {
  const int64_t blocks = (count + threads - 1) / threads;
  return static_cast<int>(blocks < 65536 * 16 ? blocks : 65536 * 16);
}

}  // namespace

cudaError_t LaunchGptqCheckHessian(const double* h, int64_t k, int* flags, cudaStream_t stream) {
  CheckHessianKernel<<<GridFor(k * k, 256), 256, 0, stream>>>(h, k * k, flags);
  return cudaGetLastError();
}

cudaError_t LaunchGptqDampen(double* h, int64_t k, double damp, int8_t* dead, cudaStream_t stream) {
  DampenKernel<<<1, 1, 0, stream>>>(h, k, damp, dead);
  return cudaGetLastError();
}

cudaError_t LaunchGptqTransposeWeight(const float* weight, int64_t n, int64_t k, const int8_t* dead,
                                      double* wt, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((k + 31) / 32), static_cast<unsigned>((n + 31) / 32));
  TransposeWeightKernel<<<grid, dim3(32, 8), 0, stream>>>(weight, n, k, dead, wt);
  return cudaGetLastError();
}

cudaError_t LaunchGptqPerChannelParameters(const double* wt, int64_t n, int64_t k,
                                           const GptqFormatParams& format, uint16_t* scales,
                                           int8_t* zero_points, int* flags, cudaStream_t stream) {
  PerChannelParametersKernel<<<GridFor(n, kRowThreads), kRowThreads, 0, stream>>>(
      wt, n, k, format, scales, zero_points, flags);
  return cudaGetLastError();
}

cudaError_t LaunchGptqQuantizeBlock(double* wt, int64_t n, int64_t k, const double* u, int64_t b1,
                                    int64_t b2, const GptqFormatParams& format, int8_t* codes,
                                    uint16_t* scales, int8_t* zero_points, double* e,
                                    float* pre_rounding, int* flags, cudaStream_t stream) {
  QuantizeBlockKernel<<<static_cast<unsigned>((n + kRowThreads - 1) / kRowThreads), kRowThreads, 0,
                        stream>>>(wt, n, k, u, b1, b2, format, codes, scales, zero_points, e,
                                  pre_rounding, flags);
  return cudaGetLastError();
}

cudaError_t LaunchWidenToDouble(const float* x, int64_t count, double* y, cudaStream_t stream) {
  WidenKernel<<<GridFor(count, 256), 256, 0, stream>>>(x, count, y);
  return cudaGetLastError();
}

cudaError_t LaunchMirrorUpperToLower(double* a, int64_t k, cudaStream_t stream) {
  const unsigned tiles = static_cast<unsigned>((k + 31) / 32);
  MirrorKernel<<<dim3(tiles, tiles), dim3(32, 8), 0, stream>>>(a, k);
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
