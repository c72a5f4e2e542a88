// GPTQ on the GPU (quant/gptq_quantizer.h is the CPU reference and says the algorithm): the same
// QuantizedMatrix as QuantizeGptq without act_order and clip search, in double precision:
//
//   dead inputs (H_ii <= 0) and dampening      one-thread kernel (the CPU's summation order)
//   H = R^T R                                  cusolverDnDpotrf (upper)
//   H^-1 from R                                cusolverDnDpotri (upper)
//   H^-1 = U^T U                               cusolverDnDpotrf (upper): U is GPTQ's factor
//   per block of block_size columns            one kernel: thread per row quantizes the block's
//                                              columns in order (group scales at the group's first
//                                              column, exactly as QuantizeRtn), spreads each
//                                              error over the block's later columns
//   the block's errors onto the later columns  cublasDgemm
//
// Codes equal the CPU's except where a double sum taken in another order (cuSOLVER's factors,
// cuBLAS's update) moves a value across a rounding boundary: an element whose pre-rounding value
// x / s is within a relative 1e-9 of a .5 boundary (or a group range that crosses an FP16 scale
// boundary) may differ by one step, and everything it spreads its error to then differs a little.
//
// Everything is enqueued on `stream` (the cuBLAS / cuSOLVER handles are bound to it); there is
// no host synchronisation, so failures found on the device (a Hessian that is not positive
// definite after dampening, non-finite values, a scale beyond FP16) are reported through
// `status`: copy it back after the stream finishes and pass it to GptqSolverError.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flatfleet::cuda {

struct GptqWeightFormat {
  int bits = 4;             // 2..8
  bool symmetric = true;    // false: per-group zero points
  bool balanced = false;    // RTN's balanced scale (symmetric only); codes as the CPU GPTQ
  int64_t group_size = 0;   // 0: per output channel; else divides cols
  float clip_ratio = 1.0f;  // (0, 1]
};

// Device status of one solve (int32 each); zero-initialise before SolveGptqOnDevice.
struct GptqSolverStatus {
  int32_t cholesky_info = 0;          // cuSOLVER potrf of H
  int32_t inverse_info = 0;           // potri
  int32_t inverse_cholesky_info = 0;  // potrf of H^-1
  int32_t flags = 0;                  // non-finite Hessian / weight, scale overflow
};

struct DeviceGptqSolve {
  int64_t rows = 0, cols = 0;  // the weight's n (outputs) and k (inputs), > 0
  GptqWeightFormat format;
  double damp = 0.01;             // >= 0
  int64_t block_size = 128;       // > 0
  const float* weight = nullptr;  // [rows, cols] row-major, device
  // [cols, cols] symmetric, device; only the upper triangle (column-major) and the diagonal are
  // read, so the row-major lower triangle works too. Overwritten (it becomes the factor U).
  double* hessian = nullptr;
  int8_t* codes = nullptr;             // [rows, cols] row-major out
  uint16_t* scales = nullptr;          // [rows, groups] FP16 bits out
  int8_t* zero_points = nullptr;       // [rows, groups] out, asymmetric only (else ignored)
  GptqSolverStatus* status = nullptr;  // device, zero-initialised
  // Optional [rows, cols] out (tests): float(w) / scale of each element before rounding, to tell
  // rounding ties from errors when comparing with the CPU.
  float* pre_rounding = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;  // >= GptqSolverWorkspaceBytes
  cublasHandle_t cublas = nullptr;
  cusolverDnHandle_t cusolver = nullptr;
};

// Bytes of workspace a solve of this shape needs: the working weight in double (rows x cols), the
// block's errors (rows x block_size), dead-column flags and cuSOLVER's buffer (it asks cuSOLVER,
// which needs the handle; no device work).
absl::StatusOr<size_t> GptqSolverWorkspaceBytes(int64_t rows, int64_t cols, int64_t block_size,
                                                cusolverDnHandle_t cusolver);

// Validates (InvalidArgument naming the field) and enqueues the whole solve on `stream`.
absl::Status SolveGptqOnDevice(const DeviceGptqSolve& args, cudaStream_t stream);

// The error a finished solve's status (copied to the host) stands for, or OK.
absl::Status GptqSolverError(const GptqSolverStatus& status);

// H += X^T X for x [rows, cols] float32 calibration inputs (row-major, device), accumulated in
// double: each product of two floats is exact in double, so the only rounding is the double
// accumulation (cuBLAS's order, not the CPU's). Only the upper triangle of `gram` (column-major;
// the diagonal included) is updated: MirrorGramUpperToLower completes it when the full matrix
// is needed (the solver does not need it). `workspace` holds the rows widened to double in
// chunks: any size of at least cols doubles (more rows per cublasDsyrk call when larger).
struct DeviceGramAccumulate {
  int64_t rows = 0, cols = 0;  // rows >= 0, cols > 0
  const float* x = nullptr;
  double* gram = nullptr;  // [cols, cols] device
  double* workspace = nullptr;
  size_t workspace_bytes = 0;
  cublasHandle_t cublas = nullptr;
};
absl::Status AccumulateGramOnDevice(const DeviceGramAccumulate& args, cudaStream_t stream);
absl::Status MirrorGramUpperToLower(double* gram, int64_t cols, cudaStream_t stream);

}  // namespace flatfleet::cuda
