// Raw launchers of the GPTQ solver's kernels (gptq_solver.cu). They check nothing: callers go
// through SolveGptqOnDevice (gptq_solver.h), which also runs the cuSOLVER / cuBLAS steps between
// them.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

// Bits of the solver's device status word (GptqSolverStatus::flags).
inline constexpr int kGptqNonFiniteHessian = 1;
inline constexpr int kGptqNonFiniteWeight = 2;
inline constexpr int kGptqScaleOverflow = 4;

// What every quantizing kernel needs to know about the format.
struct GptqFormatParams {
  int32_t qmin = 0, qmax = 0;
  bool symmetric = true;
  bool balanced = false;
  float clip_ratio = 1.0f;
  int64_t group_size = 0;  // columns per group (cols when per channel)
  int64_t groups = 1;      // per row
  bool per_channel = true;
};

// Flags a non-finite entry of h [k, k] (any of them, as the CPU checks).
cudaError_t LaunchGptqCheckHessian(const double* h, int64_t k, int* flags, cudaStream_t stream);
// Dead inputs (H_ii <= 0: H_ii = 1, dead[i] = 1) and dampening H_ii += damp * mean(diag H), with
// the diagonal summed in index order by one thread (the CPU's order, so the damped H is equal).
cudaError_t LaunchGptqDampen(double* h, int64_t k, double damp, int8_t* dead, cudaStream_t stream);
// wt [k, n] (row p holds column p of W over the n rows) = double(weight [n, k]), dead columns 0.
cudaError_t LaunchGptqTransposeWeight(const float* weight, int64_t n, int64_t k, const int8_t* dead,
                                      double* wt, cudaStream_t stream);
// Per channel: each row's scale (and zero point) from wt, as QuantizeRtn computes them.
cudaError_t LaunchGptqPerChannelParameters(const double* wt, int64_t n, int64_t k,
                                           const GptqFormatParams& format, uint16_t* scales,
                                           int8_t* zero_points, int* flags, cudaStream_t stream);
// The columns [b1, b2) of one block: quantize each, spread its error over the block's later
// columns, record the scaled errors e [b2 - b1, n] (row c: column b1 + c over the rows). `u` is
// the upper Cholesky factor of H^-1, column-major [k, k] (U(p, j) at u[p + j * k]). Group
// parameters are computed when a group's first column is reached.
cudaError_t LaunchGptqQuantizeBlock(double* wt, int64_t n, int64_t k, const double* u, int64_t b1,
                                    int64_t b2, const GptqFormatParams& format, int8_t* codes,
                                    uint16_t* scales, int8_t* zero_points, double* e,
                                    float* pre_rounding, int* flags, cudaStream_t stream);

// x [rows, cols] float -> y [rows, cols] double (exact).
cudaError_t LaunchWidenToDouble(const float* x, int64_t count, double* y, cudaStream_t stream);
// Copies the upper triangle of a column-major [k, k] matrix onto its lower triangle.
cudaError_t LaunchMirrorUpperToLower(double* a, int64_t k, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
