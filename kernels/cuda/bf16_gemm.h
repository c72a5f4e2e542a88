// bf16 linear layers on cuBLASLt: Y[m, n] = X[m, k] W[n, k]^T (+ bias[n]), float32 accumulation
// (CUBLAS_COMPUTE_32F) and one rounding of the output. Activations and outputs are row-major with
// a row stride; W is in the Hugging Face layout [out_features, in_features]. Device memory only.
//
// Row-major is mapped onto cuBLASLt's column-major by the transpose identity: row-major Y[m, n]
// is column-major Y^T[n, m] = W X^T, i.e. A = W (column-major [k, n], op T), B = X (column-major
// [k, m], op N), D = Y^T. The bias epilogue then adds bias[row of D] = bias[n].
//
// The bias. cuBLASLt's bias epilogue is used only where it is known to round once: n % 8 == 0
// and x, w, y and bias all 16-byte aligned (pointer and row stride; UsesBiasEpilogue says). On an
// H200, with 2-byte aligned bf16 operands, it behaved as if X W^T were rounded to bf16 before the
// bias was added, rounding twice. Elsewhere the bias is added by AddBias (bias_add.h) after the
// GEMM, on the same stream:
//   * float32 Y: the GEMM into Y, then Y += bias in place (the epilogue's own two float32
//     roundings);
//   * bf16 Y: the GEMM in chunks of rows into a float32 scratch carved from the front of the
//     workspace (at most half of it; cuBLASLt gets the rest), then Y = bf16(scratch + bias),
//     one rounding to bf16 as with a correct epilogue. Needs workspace_bytes >= 8 * (n rounded
//     up to a multiple of 4), else Run fails with FailedPrecondition.
//
// The algorithm of each distinct problem (shape, strides, types, bias, pointer alignments) is
// chosen once and cached, so steady-state calls only enqueue the matmul: no heuristic query, no
// timing, no allocation (the workspace is the caller's), no host synchronisation, hence
// capturable into CUDA graphs. Call Prepare() for each problem before capturing.
//
// Choosing (autotuning, Options::autotune, on by default). cuBLASLt's heuristic ranks its
// candidates by a model, and for decode shapes (small m, weights of 25-50 MB that must be
// streamed from HBM by enough CTAs to fill the GPU) its first choice is often not the fastest.
// So the first time a problem is seen outside stream capture, every usable candidate (up to
// Options::candidates from the heuristic, plus split-K variants of its top algorithms when it
// offers none) is run once to warm up and then Options::timing_iterations times, each after an
// L2 flush, timed with CUDA events on the actual operands; the median decides, and the
// heuristic's first choice is kept unless another is more than 2% faster. GPU time per problem
// is kept within about Options::tuning_budget_us (fewer iterations, then fewer candidates: the
// large prefill GEMMs, where the heuristic is good, end up untuned). Tuning runs on the stream
// of the call (in order with the caller's work there, which must leave x, w readable and y
// writable: the candidates write y, which the call then overwrites) and waits for it on the
// host: a few milliseconds per problem, once. A problem first met while its stream is capturing
// gets the heuristic's first choice, and is tuned at its first call outside capture (graphs
// captured before keep the first choice). Every candidate sums in float32 (split-K partials
// reduced in float32 for bf16 outputs), so any choice stays within the same error bound; but
// different choices may differ in the last bits, so two instances (or processes) may not agree
// bit for bit: Options{.autotune = false} keeps the heuristic's deterministic first choice.
// The L2 flush reads a buffer of twice the L2 (100 MB on an H200) taken with cudaMallocAsync on
// the stream for the tuning session and freed after it; without memory for it, or with
// Options::flush_l2 off, candidates are timed with a warm L2 (weights partly cached).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/gemm_element_type.h"

struct cublasLtContext;  // cublasLtHandle_t, without pulling cublasLt.h into every includer

namespace flatfleet::cuda {

struct Bf16GemmArgs {
  int64_t m = 0, n = 0, k = 0;       // m, n >= 0 (0: nothing to do), k >= 1
  const __nv_bfloat16* x = nullptr;  // [m, k], rows x_stride elements apart
  int64_t x_stride = 0;              // 0 means k
  const __nv_bfloat16* w = nullptr;  // [n, k], rows w_stride elements apart
  int64_t w_stride = 0;              // 0 means k
  // Optional [n]. cuBLASLt's bias epilogue reads bias elements of the output type, so bias_type
  // must equal y_type (bf16 bias with bf16 Y, float32 bias with float32 Y); it is added to the
  // float32 accumulator before the single rounding of the output (by the epilogue or by the
  // fallback above).
  const void* bias = nullptr;
  GemmElementType bias_type = GemmElementType::kBf16;
  void* y = nullptr;     // [m, n], rows y_stride elements apart; must not overlap x, w or bias
  int64_t y_stride = 0;  // 0 means n
  GemmElementType y_type = GemmElementType::kBf16;  // kFloat32 e.g. for the LM head's logits
};

// Alignment: any. Pointer and leading-dimension alignment (largest power of two <= 256 bytes
// dividing both) is passed to the heuristic, which then only offers kernels that can handle it;
// odd k or n (2-byte alignment) get cuBLASLt's slower unaligned kernels. If cuBLASLt offers no
// algorithm at all the call fails with Unimplemented, naming the problem.
//
// Thread-safe (one mutex, held through a tuning's few milliseconds); but the workspace (also the
// bias fallback's scratch) is shared by all calls, so calls on different streams must not run
// concurrently on the device: give each stream its own CublasLtGemm.
class CublasLtGemm {
 public:
  // Workspace cuBLASLt may use for split-K and the like (NVIDIA recommends 32 MiB on Hopper).
  static constexpr size_t kRecommendedWorkspaceBytes = size_t{32} << 20;
  static constexpr size_t WorkspaceBytes() { return kRecommendedWorkspaceBytes; }

  // How each problem's algorithm is chosen (see the top of this file).
  struct Options {
    bool autotune = true;  // false: the heuristic's first usable candidate, no timing
    int candidates = 16;   // heuristic results asked for, >= 1
    // Also time split-K variants (2, 4, 8, 16 splits, float32 reduction in the workspace) of the
    // heuristic's top two algorithms when it offers no split-K candidate itself.
    bool split_k_variants = true;
    int timing_iterations = 3;         // timed runs per candidate (their median), >= 1
    double tuning_budget_us = 5000.0;  // about the most GPU time spent tuning one problem, > 0
    bool flush_l2 = true;              // evict the L2 before each timed run (weights from HBM)
  };

  // `workspace`: device memory of `workspace_bytes` (may be 0 with a null pointer: then only
  // algorithms without workspace are used), 256-byte aligned, owned by the caller and kept alive
  // while this object is used. InvalidArgument for bad options, naming the field.
  static absl::StatusOr<std::unique_ptr<CublasLtGemm>> Create(void* workspace,
                                                              size_t workspace_bytes);
  static absl::StatusOr<std::unique_ptr<CublasLtGemm>> Create(void* workspace,
                                                              size_t workspace_bytes,
                                                              const Options& options);
  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  // Validates `args` and picks (or finds) the cached algorithm of each of its cuBLASLt calls
  // (the bias fallback may make two: full chunks and the last). With autotune, an untuned
  // problem is tuned on `stream` (which writes args.y and the workspace, and waits on the host),
  // unless `stream` is capturing; without, host only.
  absl::Status Prepare(const Bf16GemmArgs& args, cudaStream_t stream = nullptr);
  // Validates, prepares if needed (tuning on `stream`, as Prepare), and enqueues the matmul (and
  // the bias fallback's calls) on `stream`.
  absl::Status Run(const Bf16GemmArgs& args, cudaStream_t stream);

  // Whether Run adds args.bias in cuBLASLt's epilogue (false: no bias, invalid arguments, or
  // the AddBias fallback).
  static bool UsesBiasEpilogue(const Bf16GemmArgs& args);

  // How many heuristic queries have run (tests check that repeated shapes run none).
  int64_t heuristic_queries() const;
  // How many problems have had their algorithm settled by the tuner (timed, or found to have a
  // single candidate, or over the budget); tests check that repeated shapes tune nothing.
  int64_t tunings() const;

  // ---- Inspection (tests and benchmarks; host only, no tuning) ----
  // The most candidates any cuBLASLt call of `args` has (prepares the plans if needed: heuristic
  // queries, but no tuning).
  absl::StatusOr<int> CandidateCount(const Bf16GemmArgs& args);
  // Enqueues `args` like Run but with candidate `candidate` (0-based; clamped to each call's
  // last) instead of the chosen algorithm; the cached choice is left as it is.
  absl::Status RunCandidate(const Bf16GemmArgs& args, int candidate, cudaStream_t stream);
  // The chosen algorithm of each cuBLASLt call of `args` (ids, tile, stages, split-K, ...) and
  // how it was chosen (timings), e.g. for a benchmark's label; with `candidate` >= 0, that
  // candidate's configuration instead (clamped as in RunCandidate). NotFound if not prepared.
  absl::StatusOr<std::string> DescribeAlgorithm(const Bf16GemmArgs& args, int candidate = -1) const;

 private:
  struct State;
  CublasLtGemm(cublasLtContext* handle, void* workspace, size_t workspace_bytes,
               const Options& options);
  std::unique_ptr<State> state_;
};

}  // namespace flatfleet::cuda
