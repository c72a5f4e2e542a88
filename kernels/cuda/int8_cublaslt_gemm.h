// Exact INT8 x INT8 -> int32 GEMMs on cuBLASLt's IMMA tensor-core kernels: sums[m, n] =
// X[m, k] W[n, k]^T over int8 codes, row-major and dense. The sums are exact (int32, K bounded
// by the caller), so any algorithm cuBLASLt picks gives the same bits; the float epilogue comes
// after (int8_dequant_epilogue.h). Used for the W8A8 layers' prefill, where it is several times
// faster than the mma.sync kernel in int8_gemm.h.
//
// Row-major maps onto cuBLASLt's column-major by the transpose identity, which is also the "TN"
// form its INT8 kernels require: A = W (column-major [k, n], op T), B = X ([k, m], op N),
// D = sums^T ([n, m]). Each (m, n, k) gets the heuristic's first algorithm once (host only, no
// timing) and keeps it; a later call only enqueues the matmul, so it is graph-capturable once
// prepared. Where cuBLASLt offers no algorithm the call fails with Unimplemented and the caller
// uses its own kernel.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flatfleet::cuda {

struct Int8GemmArgs {
  int64_t m = 0, n = 0, k = 0;  // m, n >= 1; k a positive multiple of 16
  const int8_t* x = nullptr;    // [m, k], 16-byte aligned
  const int8_t* w = nullptr;    // [n, k], 16-byte aligned
  int32_t* sums = nullptr;      // [m, n], 16-byte aligned
};

class CublasLtInt8Gemm {
 public:
  // `workspace` (device, 256-byte aligned, may be null with 0 bytes) is the caller's and must
  // outlive this object; calls on one object must not run concurrently on the device.
  static absl::StatusOr<std::unique_ptr<CublasLtInt8Gemm>> Create(void* workspace,
                                                                  size_t workspace_bytes);
  ~CublasLtInt8Gemm();
  CublasLtInt8Gemm(const CublasLtInt8Gemm&) = delete;
  CublasLtInt8Gemm& operator=(const CublasLtInt8Gemm&) = delete;

  // Validates, finds or makes the problem's plan, and enqueues the matmul on `stream`.
  absl::Status Run(const Int8GemmArgs& args, cudaStream_t stream);

 private:
  struct State;
  explicit CublasLtInt8Gemm(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace flatfleet::cuda
