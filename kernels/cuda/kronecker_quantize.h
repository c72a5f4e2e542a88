// FlatQuant's online transform fused with the per-token activation quantizer, on the TF32 tensor
// cores: codes and FP16 scales of t = (x diag(s)^-1) (P1 (x) P2) in one kernel, without the float32
// row of the exact path (kronecker_transform.h followed by int8_activation_quantizer.h).
//
// Numerics. u = x / s is the exact path's float32 division. T = P1^T U and then Y = T P2 (U, T
// the n1 x n2 views) run as mma.sync m16n8k8 TF32: each operand rounded to TF32 (10-bit mantissa,
// round to nearest), products summed in float32 in the tensor cores' order. So, elementwise against
// the exact transform Y* (the CPU's, in double),
//   |Y - Y*| <= E * (|P1|^T |U| |P2|) + 2^-24 |Y*|,  E = e1 + e2 + e1 e2,
//   e_k = 2^-10 + 2 (n_k + 1) 2^-24  (two TF32 roundings per product, n_k float32 additions)
// (n_1 = n1, n_2 = n2), the bound KroneckerQuantizeBound states and the tests check. For the
// 4-bit codes this moves a code by one step only where t / s lies within that bound of a rounding
// boundary: finer than the engine's own bf16 rounding of x (2^-9 relative) that precedes it. (For
// 8-bit codes the same bound spans a good part of a step: FlatQuant's recipe is W4A4.)
// The scale and codes then follow the quantizer exactly: s = fp16_up(clip * max|t| / qmax) (1 for
// an all-zero row), code = clamp(rne(t / s), -qmax, qmax), zeros from n to codes_stride; a row with
// a non-finite value gets scale +inf (FP16 bits 0x7c00) and zero codes, as the quantizer's.
//
// One block of 16 warps per 1, 2 or 4 token rows (as many as the accumulators and shared memory
// allow: 4 for 4096 and 8192, 2 for 14336, 1 for 28672; fewer where the blocks would not fill the
// GPU's SMs): each row sits in shared memory as an n1 x (n2 + 4) float view (T overwrites U in
// place, each warp owning whole column blocks), P1 beside them; each P2 fragment serves every row
// of the block, read as TF32 bits from shared memory where P2 fits there (copied with cp.async at
// the start beside P1: 4096, 8192 and the split paths but 28672's; else over P1 once stage 1 is
// done, in up to 4 chunks of k-steps: 14336 in blocks of 2 rows, 28672 in 2 chunks), else from L2
// (KroneckerQuantizeSharedLayout). Rounding P2 to TF32 once when staged gives the bits that
// rounding it at each use gave. Requires n1 a multiple of 16 (at most 128) and n2 a multiple of
// 8, and the row, P1 and a warp's output tiles within the kernel's limits
// (KroneckerQuantizeSupports): every Llama-3 and Mixtral width (4096 = 64 x 64, 8192 = 64 x 128,
// 14336 = 112 x 128, 28672 = 128 x 224).
//
// The split path (decode). Row a of Y depends on column a of P1 alone (Y[a, :] = (P1[:, a]^T U)
// P2), so while rows are few (rows x CTAs within the SMs: KroneckerQuantizeClusterSize, e.g. up
// to 16 rows at 8 CTAs) each token row runs on a thread-block cluster of 2-8 CTAs, rank r
// computing the 16-row tiles [r m / C, (r + 1) m / C) of T and Y (m = n1 / 16, C CTAs) from the
// whole U and its columns of P1; the CTAs exchange their partial max|t| and finiteness through
// distributed shared memory and each quantizes its own tiles. Bit-identical to one block per row:
// every output element is the same MMA sequence as there (the same operands, the same 16 x 8 tile
// position, the same k order in both products, the same TF32 roundings), only issued by another
// warp of another CTA, and the row's max over any partition is the same value (max is exact and
// order-free); so the scale and every code are the same bits, as they are for blocks of 1, 2 or 4
// rows. The tests assert that.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/int8_activation_quantizer.h"
#include "kernels/cuda/kronecker_quantize_shape.h"  // KroneckerQuantizeSupports

namespace flatfleet::cuda {

struct DeviceKroneckerQuantize {
  const void* x = nullptr;  // [rows, n] float32 or bfloat16 bits, device; n = n1 * n2
  ActivationType type = ActivationType::kBfloat16;
  int64_t rows = 0;
  int64_t x_stride = 0;  // 0 means n
  int64_t n1 = 0;
  int64_t n2 = 0;
  const float* divisors = nullptr;  // [n] FlatQuant's smoothing s (positive), device
  const float* p1 = nullptr;        // [n1 * n1] row-major, device
  const float* p2 = nullptr;        // [n2 * n2] row-major, device
  float clip_ratio = 1.0f;          // (0, 1]
  int qmax = 7;                     // 1..127
  int8_t* codes = nullptr;          // [rows, codes_stride], device
  int64_t codes_stride = 0;         // >= n (0 means n); columns n.. are written 0
  uint16_t* scales = nullptr;       // [rows] FP16 bits, device
};

// The error bound above for one element: E * bound_term + 2^-24 |exact|, where bound_term is that
// element of |P1|^T |U| |P2|.
double KroneckerQuantizeBound(int64_t n1, int64_t n2, double bound_term, double exact);

// Validates the arguments (InvalidArgument naming the field) and enqueues the kernel on `stream`.
absl::Status ApplyKroneckerQuantize(const DeviceKroneckerQuantize& args, cudaStream_t stream);

namespace internal {

// Forces a path, for the tests (bit equality across paths) and the benchmark; 0 means the rules.
struct KroneckerQuantizeOptions {
  int cluster = 0;          // CTAs per row: 1 (no cluster) or 2..min(8, n1 / 16) (the split path)
  int rows_per_block = 0;   // with cluster 1: 1, 2 or 4 where they fit (KroneckerQuantizeRowsFit)
  bool p2_from_l2 = false;  // stage 2 reads P2 from L2 even where shared memory would hold it
};

absl::Status ApplyKroneckerQuantizeWith(const DeviceKroneckerQuantize& args,
                                        const KroneckerQuantizeOptions& options,
                                        cudaStream_t stream);

}  // namespace internal

}  // namespace flatfleet::cuda
