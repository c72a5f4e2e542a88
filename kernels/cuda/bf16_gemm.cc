#include "kernels/cuda/bf16_gemm.h"

#include <cublasLt.h>

#include <algorithm>
#include <cmath>
#include <compare>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/bias_add.h"
#include "kernels/cuda/l2_flush_launch.h"

namespace flatfleet::cuda {
namespace {

constexpr char kName[] = "bf16 GEMM";
// The tuner keeps the heuristic's first choice unless another candidate is faster by more than
// this fraction: timing noise alone then rarely changes the choice between instances.
constexpr double kMinimumGain = 0.02;
// Explicit split-K variants (when the heuristic offers none): these split counts, each split at
// least kMinSplitDepth deep in k, of the first kSplitKBases distinct algorithms supporting them.
constexpr int32_t kSplitKCounts[] = {2, 4, 8, 16};
constexpr int64_t kMinSplitDepth = 128;
constexpr int kSplitKBases = 2;

const char* TypeName(GemmElementType type) {
  return type == GemmElementType::kBf16 ? "bf16" : "float32";
}

cudaDataType_t CudaType(GemmElementType type) {
  return type == GemmElementType::kBf16 ? CUDA_R_16BF : CUDA_R_32F;
}

size_t ElementBytes(GemmElementType type) { return type == GemmElementType::kBf16 ? 2 : 4; }

// Largest power of two <= 256 dividing both the address and the leading dimension in bytes:
// what cuBLASLt calls a matrix's alignment (pointer, leading dimension and other strides).
uint32_t Alignment(const void* pointer, uint64_t ld_bytes) {
  const uint64_t bits = reinterpret_cast<uintptr_t>(pointer) | ld_bytes | 256;
  return static_cast<uint32_t>(bits & (~bits + 1));
}

absl::Status CublasError(const char* what, cublasStatus_t status) {
  return absl::InternalError(absl::StrCat(kName, ": ", what,
                                          " failed: ", cublasLtGetStatusName(status), " (",
                                          cublasLtGetStatusString(status), ")"));
}

// Whether cuBLASLt's bias epilogue is trusted for `args` (normalized, with a bias): every operand
// 16-byte aligned (pointer and row stride) and n a multiple of 8. On an H200 the epilogue of the
// kernels picked for 2-byte aligned bf16 operands behaved as if X W^T were rounded to bf16 before
// the bias was added and the sum rounded again (outputs on the grid of the operands' bf16 ulp,
// errors of half an ulp of |x w| where x w and the bias nearly cancel). The failing cases had x
// and y 2-byte aligned (odd k and n, or an odd offset and y_stride) but an aligned bias pointer,
// so no single operand is known to be the trigger: all of them must be aligned.
bool BiasEpilogueTrusted(const Bf16GemmArgs& a) {
  return a.n % 8 == 0 && Alignment(a.bias, 0) >= 16 && Alignment(a.x, a.x_stride * 2) >= 16 &&
         Alignment(a.w, a.w_stride * 2) >= 16 &&
         Alignment(a.y, a.y_stride * ElementBytes(a.y_type)) >= 16;
}

// The bf16-output bias fallback: GEMM rows in chunks into a float32 scratch at the start of the
// workspace (rows padded to 16 bytes), cuBLASLt's workspace after it. The scratch takes at most
// half the workspace, so split-K algorithms keep the other half.
struct BiasFallbackLayout {
  int64_t scratch_stride = 0;  // floats per scratch row
  int64_t chunk_rows = 0;      // 0: the workspace is too small for one row
  size_t scratch_bytes = 0;    // a multiple of 256 (cuBLASLt's workspace stays aligned)
};
BiasFallbackLayout MakeBiasFallbackLayout(int64_t m, int64_t n, size_t workspace_bytes) {
  BiasFallbackLayout layout;
  layout.scratch_stride = (n + 3) / 4 * 4;
  const auto row_bytes = static_cast<size_t>(layout.scratch_stride) * 4;
  layout.chunk_rows = std::min<int64_t>(m, static_cast<int64_t>(workspace_bytes / 2 / row_bytes));
  layout.scratch_bytes = (static_cast<size_t>(layout.chunk_rows) * row_bytes + 255) / 256 * 256;
  return layout;
}

// Whether `algo` sums in float32 all the way: no split-K, or split-K partials reduced in the
// compute type, or any scheme when the output itself is float32.
bool AccumulatesInFloat32(const cublasLtMatmulAlgo_t& algo, bool float_out) {
  if (float_out) return true;
  int32_t splits = 1;
  uint32_t scheme = CUBLASLT_REDUCTION_SCHEME_NONE;
  size_t written = 0;
  if (cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splits,
                                           sizeof(splits), &written) != CUBLAS_STATUS_SUCCESS ||
      cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &scheme,
                                           sizeof(scheme), &written) != CUBLAS_STATUS_SUCCESS) {
    return false;
  }
  return splits <= 1 || scheme == CUBLASLT_REDUCTION_SCHEME_NONE ||
         scheme == CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
}

template <typename T>
T ConfigValue(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoConfigAttributes_t attribute,
              T fallback) {
  T value = fallback;
  size_t written = 0;
  if (cublasLtMatmulAlgoConfigGetAttribute(&algo, attribute, &value, sizeof(value), &written) !=
      CUBLAS_STATUS_SUCCESS) {
    return fallback;
  }
  return value;
}

template <typename T>
T CapabilityValue(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoCapAttributes_t attribute,
                  T fallback) {
  T value = fallback;
  size_t written = 0;
  if (cublasLtMatmulAlgoCapGetAttribute(&algo, attribute, &value, sizeof(value), &written) !=
      CUBLAS_STATUS_SUCCESS) {
    return fallback;
  }
  return value;
}

int32_t SplitCount(const cublasLtMatmulAlgo_t& algo) {
  return ConfigValue<int32_t>(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, 1);
}

// The configuration fields that tell algorithms apart.
std::string DescribeConfig(const cublasLtMatmulAlgo_t& algo) {
  return absl::StrCat(
      "algo ", ConfigValue<int32_t>(algo, CUBLASLT_ALGO_CONFIG_ID, -1), " tile ",
      ConfigValue<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_TILE_ID, 0), " stages ",
      ConfigValue<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, 0), " split-K ", SplitCount(algo),
      " reduction ", ConfigValue<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, 0),
      " swizzle ", ConfigValue<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, 0), " custom ",
      ConfigValue<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, 0), " cluster ",
      ConfigValue<uint16_t>(algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, 0));
}

// Microseconds to one decimal, for descriptions.
double Rounded(double us) { return std::round(us * 10.0) / 10.0; }

// One cuBLASLt call: Y = X W^T, plus the bias (of y_type) in the epilogue when bias is set.
struct Matmul {
  int64_t m = 0, n = 0, k = 0;
  const __nv_bfloat16* x = nullptr;
  int64_t x_stride = 0;
  const __nv_bfloat16* w = nullptr;
  int64_t w_stride = 0;
  void* y = nullptr;
  int64_t y_stride = 0;
  GemmElementType y_type = GemmElementType::kBf16;
  const void* bias = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// Everything the chosen algorithm depends on.
struct ProblemKey {
  int device = 0;
  int64_t m = 0, n = 0, k = 0;
  int64_t x_stride = 0, w_stride = 0, y_stride = 0;
  GemmElementType y_type = GemmElementType::kBf16;
  bool has_bias = false;
  uint32_t x_alignment = 0, w_alignment = 0, y_alignment = 0, bias_alignment = 0;
  size_t workspace_bytes = 0;  // the bias fallback gives cuBLASLt only part of the workspace
  auto operator<=>(const ProblemKey&) const = default;
};

// An algorithm cuBLASLt accepts for a problem, and the workspace it needs.
struct Candidate {
  cublasLtMatmulAlgo_t algo{};
  size_t workspace_bytes = 0;
};

// The cuBLASLt descriptors, candidate algorithms and choice of one problem.
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr;  // W: column-major [k, n], op T
  cublasLtMatrixLayout_t b = nullptr;  // X: column-major [k, m], op N
  cublasLtMatrixLayout_t d = nullptr;  // Y: column-major [n, m] (also C, unused with beta = 0)
  // Usable candidates (float32 accumulation, workspace that fits): the heuristic's in its order,
  // then any explicit split-K variants. Never empty once the plan is cached.
  std::vector<Candidate> candidates;
  size_t chosen = 0;     // index into candidates: what Run launches
  bool settled = false;  // false: the tuner has yet to time the candidates
  std::string how;       // how `chosen` was chosen, for DescribeAlgorithm

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

class Preference {
 public:
  Preference() { status_ = cublasLtMatmulPreferenceCreate(&preference_); }
  ~Preference() {
    if (preference_ != nullptr) cublasLtMatmulPreferenceDestroy(preference_);
  }
  Preference(const Preference&) = delete;
  Preference& operator=(const Preference&) = delete;
  cublasStatus_t status() const { return status_; }
  cublasLtMatmulPreference_t get() const { return preference_; }
  template <typename T>
  cublasStatus_t Set(cublasLtMatmulPreferenceAttributes_t attribute, T value) {
    return cublasLtMatmulPreferenceSetAttribute(preference_, attribute, &value, sizeof(value));
  }

 private:
  cublasLtMatmulPreference_t preference_ = nullptr;
  cublasStatus_t status_;
};

// Checks the arguments and fills in the default strides.
absl::StatusOr<Bf16GemmArgs> Normalize(const Bf16GemmArgs& args) {
  if (args.m < 0 || args.n < 0 || args.k <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": bad shape m = ", args.m, ", n = ", args.n, ", k = ", args.k));
  }
  Bf16GemmArgs out = args;
  if (out.x_stride == 0) out.x_stride = out.k;
  if (out.w_stride == 0) out.w_stride = out.k;
  if (out.y_stride == 0) out.y_stride = out.n;
  if (out.m == 0 || out.n == 0) return out;
  if (out.x == nullptr) return absl::InvalidArgumentError(absl::StrCat(kName, ": x is null"));
  if (out.w == nullptr) return absl::InvalidArgumentError(absl::StrCat(kName, ": w is null"));
  if (out.y == nullptr) return absl::InvalidArgumentError(absl::StrCat(kName, ": y is null"));
  if (out.x_stride < out.k) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": x_stride = ", out.x_stride, " is less than k = ", out.k));
  }
  if (out.w_stride < out.k) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": w_stride = ", out.w_stride, " is less than k = ", out.k));
  }
  if (out.y_stride < out.n) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": y_stride = ", out.y_stride, " is less than n = ", out.n));
  }
  if (out.bias != nullptr && out.bias_type != out.y_type) {
    return absl::InvalidArgumentError(absl::StrCat(
        kName, ": bias_type (", TypeName(out.bias_type), ") must equal y_type (",
        TypeName(out.y_type), "): cuBLASLt's bias epilogue reads bias of the output type"));
  }
  return out;
}

absl::Status CudaError(const char* what, cudaError_t error) {
  return absl::InternalError(absl::StrCat(kName, ": ", what, ": ", cudaGetErrorString(error)));
}

absl::Status ValidateOptions(const CublasLtGemm::Options& options) {
  if (options.candidates < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": Options::candidates = ", options.candidates, " must be >= 1"));
  }
  if (options.timing_iterations < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        kName, ": Options::timing_iterations = ", options.timing_iterations, " must be >= 1"));
  }
  if (!(options.tuning_budget_us > 0) || !std::isfinite(options.tuning_budget_us)) {
    return absl::InvalidArgumentError(absl::StrCat(
        kName, ": Options::tuning_budget_us = ", options.tuning_budget_us, " must be > 0"));
  }
  return absl::OkStatus();
}

// Whether the tuner may time work on `stream`: not while it (or, for the legacy stream, another
// blocking stream) is being captured. An error of the query (e.g. cudaErrorStreamCaptureImplicit)
// also means no, and is cleared so that no later cudaGetLastError reports it.
bool MayTimeOn(cudaStream_t stream) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &capture) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return capture == cudaStreamCaptureStatusNone;
}

// Relaxed stream-capture mode for this thread while alive: the tuner's host synchronisation
// must not invalidate a capture this thread may have running on another stream.
class RelaxedCaptureMode {
 public:
  RelaxedCaptureMode() { cudaThreadExchangeStreamCaptureMode(&mode_); }
  ~RelaxedCaptureMode() { cudaThreadExchangeStreamCaptureMode(&mode_); }
  RelaxedCaptureMode(const RelaxedCaptureMode&) = delete;
  RelaxedCaptureMode& operator=(const RelaxedCaptureMode&) = delete;

 private:
  cudaStreamCaptureMode mode_ = cudaStreamCaptureModeRelaxed;
};

// Timing events, destroyed with the pool.
class EventPool {
 public:
  EventPool() = default;
  ~EventPool() {
    for (cudaEvent_t event : events_) cudaEventDestroy(event);
  }
  EventPool(const EventPool&) = delete;
  EventPool& operator=(const EventPool&) = delete;

  absl::Status Create(size_t count) {
    while (events_.size() < count) {
      cudaEvent_t event = nullptr;
      if (cudaError_t error = cudaEventCreate(&event); error != cudaSuccess) {
        return CudaError("cudaEventCreate", error);
      }
      events_.push_back(event);
    }
    return absl::OkStatus();
  }
  cudaEvent_t operator[](size_t i) const { return events_[i]; }

 private:
  std::vector<cudaEvent_t> events_;
};

// Microseconds between two completed events; negative on error.
double ElapsedUs(cudaEvent_t start, cudaEvent_t stop) {
  float ms = 0;
  if (cudaEventElapsedTime(&ms, start, stop) != cudaSuccess) {
    cudaGetLastError();
    return -1.0;
  }
  return 1e3 * ms;
}

// A buffer of twice the device's L2, allocated in stream order for one tuning session (and freed
// in stream order after it), read by Flush() to evict the L2. Without it (not `enabled`, no
// memory left, no stream-ordered allocator) the session times with a warm L2: ok() is false and
// Flush() does nothing.
class L2Flusher {
 public:
  L2Flusher(bool enabled, int device, cudaStream_t stream) : stream_(stream) {
    if (!enabled) return;
    int l2_bytes = 0;
    if (cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device) != cudaSuccess ||
        l2_bytes <= 0) {
      cudaGetLastError();
      return;
    }
    bytes_ = (2 * static_cast<size_t>(l2_bytes) + 255) / 256 * 256;
    // The sink (4 bytes) after the flushed bytes; all initialized, so no uninitialized reads.
    if (cudaMallocAsync(&buffer_, bytes_ + 256, stream_) != cudaSuccess) {
      cudaGetLastError();
      buffer_ = nullptr;
      return;
    }
    if (cudaMemsetAsync(buffer_, 0, bytes_ + 256, stream_) != cudaSuccess) {
      cudaGetLastError();
      cudaFreeAsync(buffer_, stream_);
      buffer_ = nullptr;
    }
  }
  ~L2Flusher() {
    if (buffer_ != nullptr) cudaFreeAsync(buffer_, stream_);
  }
  L2Flusher(const L2Flusher&) = delete;
  L2Flusher& operator=(const L2Flusher&) = delete;

  bool ok() const { return buffer_ != nullptr; }
  absl::Status Flush() const {
    if (buffer_ == nullptr) return absl::OkStatus();
    auto* sink = reinterpret_cast<uint32_t*>(static_cast<char*>(buffer_) + bytes_);
    if (cudaError_t error = internal::LaunchL2FlushRead(buffer_, bytes_, sink, stream_);
        error != cudaSuccess) {
      return CudaError("L2 flush", error);
    }
    return absl::OkStatus();
  }

 private:
  cudaStream_t stream_;
  void* buffer_ = nullptr;
  size_t bytes_ = 0;
};

// What Execute does with each cuBLASLt call of a GEMM.
struct Action {
  bool create = true;   // make missing plans (heuristic query); false: NotFound
  bool tune = false;    // time the candidates of unsettled plans (unless the stream is capturing)
  bool launch = false;  // enqueue the calls and the bias fallback's kernels
  int candidate = -1;   // >= 0: launch this candidate (clamped) instead of the chosen one
  int* max_candidates = nullptr;       // out: the most candidates of any call
  std::string* description = nullptr;  // out: each distinct call's choice
};

}  // namespace

struct CublasLtGemm::State {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  Options options;
  mutable std::mutex mutex;
  std::map<ProblemKey, std::unique_ptr<Plan>> plans;  // guarded by mutex
  int64_t heuristic_queries = 0;                      // guarded by mutex
  int64_t tunings = 0;                                // guarded by mutex

  // Returns the cached plan of `args`, making it first (with `create`) if needed.
  absl::StatusOr<Plan*> FindOrMakePlan(const Matmul& args, bool create);
  // Appends split-K variants of the heuristic's top algorithms to `plan` if it has none.
  void AddSplitKVariants(Plan& plan, const Matmul& args);
  // Times the candidates of `plan` on `args` (on `stream`) and settles the fastest; leaves the
  // plan unsettled if `stream` is capturing.
  absl::Status Tune(Plan& plan, const Matmul& args, cudaStream_t stream);
  void Settle(Plan& plan, size_t chosen, std::string how);
  // Enqueues `args` with `candidate`.
  absl::Status Launch(const Plan& plan, const Candidate& candidate, const Matmul& args,
                      cudaStream_t stream);
  // Does `action` for every cuBLASLt call of `args` (normalized), and with action.launch also
  // enqueues the bias fallback's kernels, on `stream`.
  absl::Status Execute(const Bf16GemmArgs& args, const Action& action, cudaStream_t stream);
};

absl::StatusOr<Plan*> CublasLtGemm::State::FindOrMakePlan(const Matmul& args, bool create) {
  ProblemKey key;
  if (cudaError_t error = cudaGetDevice(&key.device); error != cudaSuccess) {
    return CudaError("cudaGetDevice", error);
  }
  key.m = args.m;
  key.n = args.n;
  key.k = args.k;
  key.x_stride = args.x_stride;
  key.w_stride = args.w_stride;
  key.y_stride = args.y_stride;
  key.y_type = args.y_type;
  key.has_bias = args.bias != nullptr;
  key.x_alignment = Alignment(args.x, args.x_stride * 2);
  key.w_alignment = Alignment(args.w, args.w_stride * 2);
  key.y_alignment = Alignment(args.y, args.y_stride * ElementBytes(args.y_type));
  key.bias_alignment = key.has_bias ? Alignment(args.bias, 0) : 0;
  key.workspace_bytes = args.workspace_bytes;
  if (auto it = plans.find(key); it != plans.end()) return it->second.get();
  if (!create) {
    return absl::NotFoundError(absl::StrCat(kName, ": m = ", args.m, ", n = ", args.n,
                                            ", k = ", args.k, " is not prepared"));
  }
  // A plan may be made while this thread captures (a problem first met in a graph): cuBLASLt's
  // host-side queries must not invalidate the capture.
  RelaxedCaptureMode relaxed;

  auto plan = std::make_unique<Plan>();
  cublasStatus_t status = cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  if (status != CUBLAS_STATUS_SUCCESS) return CublasError("cublasLtMatmulDescCreate", status);
  const cublasOperation_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;
  status = cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &transa,
                                          sizeof(transa));
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &transb,
                                            sizeof(transb));
  }
  if (status == CUBLAS_STATUS_SUCCESS && key.has_bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const int32_t bias_type = CudaType(args.y_type);
    status = cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                            sizeof(epilogue));
    if (status == CUBLAS_STATUS_SUCCESS) {
      status = cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                              &bias_type, sizeof(bias_type));
    }
    // The heuristic reads the pointer's alignment; Run sets the actual pointer every call.
    if (status == CUBLAS_STATUS_SUCCESS) {
      status = cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                              &args.bias, sizeof(args.bias));
    }
  }
  if (status != CUBLAS_STATUS_SUCCESS) return CublasError("cublasLtMatmulDescSetAttribute", status);

  const auto rows = [](int64_t v) { return static_cast<uint64_t>(v); };
  status =
      cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_16BF, rows(args.k), rows(args.n), args.w_stride);
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_16BF, rows(args.k), rows(args.m),
                                        args.x_stride);
  }
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasLtMatrixLayoutCreate(&plan->d, CudaType(args.y_type), rows(args.n), rows(args.m),
                                        args.y_stride);
  }
  if (status != CUBLAS_STATUS_SUCCESS) return CublasError("cublasLtMatrixLayoutCreate", status);

  Preference preference;
  status = preference.status();
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = preference.Set(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                            static_cast<uint64_t>(args.workspace_bytes));
  }
  for (auto [attribute, alignment] :
       {std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.w_alignment},
        std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.x_alignment},
        std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.y_alignment},
        std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.y_alignment}}) {
    if (status == CUBLAS_STATUS_SUCCESS) status = preference.Set(attribute, alignment);
  }
  if (status != CUBLAS_STATUS_SUCCESS) return CublasError("matmul preference", status);

  // Split-K partial sums must stay in float32: the in-place and output-type reduction schemes
  // would round bf16 partial sums. Ask for compute-type reductions first; should that filter
  // leave nothing, ask again unfiltered. Either way every candidate's own configuration is
  // checked (AccumulatesInFloat32).
  const bool float_out = args.y_type == GemmElementType::kFloat32;
  std::vector<cublasLtMatmulHeuristicResult_t> results(options.candidates);
  for (const uint32_t mask : {static_cast<uint32_t>(CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE),
                              static_cast<uint32_t>(CUBLASLT_REDUCTION_SCHEME_MASK)}) {
    status = preference.Set(CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, mask);
    if (status != CUBLAS_STATUS_SUCCESS) return CublasError("matmul preference", status);
    std::fill(results.begin(), results.end(), cublasLtMatmulHeuristicResult_t{});
    int returned = 0;
    ++heuristic_queries;
    status = cublasLtMatmulAlgoGetHeuristic(handle, plan->desc, plan->a, plan->b, plan->d, plan->d,
                                            preference.get(), options.candidates, results.data(),
                                            &returned);
    if (status != CUBLAS_STATUS_SUCCESS) continue;
    for (int i = 0; i < returned; ++i) {
      if (results[i].state == CUBLAS_STATUS_SUCCESS &&
          results[i].workspaceSize <= args.workspace_bytes &&
          AccumulatesInFloat32(results[i].algo, float_out)) {
        plan->candidates.push_back({results[i].algo, results[i].workspaceSize});
      }
    }
    if (!plan->candidates.empty()) break;
  }
  if (plan->candidates.empty()) {
    return absl::UnimplementedError(absl::StrCat(
        kName, ": cuBLASLt offers no algorithm for m = ", args.m, ", n = ", args.n,
        ", k = ", args.k, " (x_stride ", args.x_stride, ", w_stride ", args.w_stride, ", y_stride ",
        args.y_stride, "; alignment in bytes x ", key.x_alignment, ", w ", key.w_alignment, ", y ",
        key.y_alignment, "; y_type ", TypeName(args.y_type), key.has_bias ? ", bias" : "",
        "; workspace ", args.workspace_bytes, " bytes; last heuristic status ",
        cublasLtGetStatusName(status), ")"));
  }
  const size_t heuristic_count = plan->candidates.size();
  if (options.autotune && options.split_k_variants) AddSplitKVariants(*plan, args);
  plan->how = absl::StrCat(
      "heuristic's first of ", heuristic_count,
      heuristic_count == plan->candidates.size()
          ? std::string()
          : absl::StrCat(" (+", plan->candidates.size() - heuristic_count, " split-K variants)"),
      options.autotune ? ", not tuned yet" : ", autotune off");
  plan->settled = !options.autotune;
  Plan* raw = plan.get();
  plans.emplace(key, std::move(plan));
  return raw;
}

void CublasLtGemm::State::AddSplitKVariants(Plan& plan, const Matmul& args) {
  for (const Candidate& candidate : plan.candidates) {
    if (SplitCount(candidate.algo) > 1) return;  // the heuristic considered split-K itself
  }
  std::vector<std::pair<int32_t, uint32_t>> bases;  // (algorithm id, tile) already varied
  const size_t heuristic_count = plan.candidates.size();
  for (size_t i = 0; i < heuristic_count && static_cast<int>(bases.size()) < kSplitKBases; ++i) {
    const cublasLtMatmulAlgo_t base = plan.candidates[i].algo;  // a copy: push_back reallocates
    const std::pair<int32_t, uint32_t> id{
        ConfigValue<int32_t>(base, CUBLASLT_ALGO_CONFIG_ID, -1),
        ConfigValue<uint32_t>(base, CUBLASLT_ALGO_CONFIG_TILE_ID, 0)};
    if (std::find(bases.begin(), bases.end(), id) != bases.end()) continue;
    const auto schemes =
        CapabilityValue<uint32_t>(base, CUBLASLT_ALGO_CAP_REDUCTION_SCHEME_MASK, 0);
    if (CapabilityValue<int32_t>(base, CUBLASLT_ALGO_CAP_SPLITK_SUPPORT, 0) == 0 ||
        (schemes & CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE) == 0) {
      continue;
    }
    bases.push_back(id);
    for (const int32_t splits : kSplitKCounts) {
      if (args.k / splits < kMinSplitDepth) break;
      cublasLtMatmulAlgo_t algo = base;
      // Float32 partials in the workspace, reduced in float32: one rounding of the output.
      const uint32_t scheme = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
      cublasLtMatmulHeuristicResult_t check{};
      if (cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splits,
                                               sizeof(splits)) != CUBLAS_STATUS_SUCCESS ||
          cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME,
                                               &scheme, sizeof(scheme)) != CUBLAS_STATUS_SUCCESS ||
          cublasLtMatmulAlgoCheck(handle, plan.desc, plan.a, plan.b, plan.d, plan.d, &algo,
                                  &check) != CUBLAS_STATUS_SUCCESS ||
          check.workspaceSize > args.workspace_bytes ||
          !AccumulatesInFloat32(algo, args.y_type == GemmElementType::kFloat32)) {
        continue;
      }
      plan.candidates.push_back({algo, check.workspaceSize});
    }
  }
}

void CublasLtGemm::State::Settle(Plan& plan, size_t chosen, std::string how) {
  plan.chosen = chosen;
  plan.settled = true;
  plan.how = std::move(how);
  ++tunings;
}

absl::Status CublasLtGemm::State::Launch(const Plan& plan, const Candidate& candidate,
                                         const Matmul& mm, cudaStream_t stream) {
  if (mm.bias != nullptr) {
    const cublasStatus_t status = cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &mm.bias, sizeof(mm.bias));
    if (status != CUBLAS_STATUS_SUCCESS) return CublasError("setting the bias pointer", status);
  }
  const float alpha = 1.0f, beta = 0.0f;
  const cublasStatus_t status =
      cublasLtMatmul(handle, plan.desc, &alpha, mm.w, plan.a, mm.x, plan.b, &beta, mm.y, plan.d,
                     mm.y, plan.d, &candidate.algo, mm.workspace, mm.workspace_bytes, stream);
  if (status != CUBLAS_STATUS_SUCCESS) return CublasError("cublasLtMatmul", status);
  return absl::OkStatus();
}

// Two passes, both in stream order on `stream` (so the caller's pending work there has finished
// with x, w, y and the workspace before any candidate touches them). First the heuristic's
// choice: a warm-up run, then one L2 flush and one run, timed, which size the second pass to the
// budget. Then each candidate: a warm-up run (also loads its kernels, which lazy module loading
// would otherwise charge to the first timed run), then `iterations` times an L2 flush and a timed
// run. One host synchronisation per pass.
absl::Status CublasLtGemm::State::Tune(Plan& plan, const Matmul& mm, cudaStream_t stream) {
  const size_t count = plan.candidates.size();
  if (count == 1) {
    Settle(plan, 0, "the only candidate");
    return absl::OkStatus();
  }
  if (!MayTimeOn(stream)) return absl::OkStatus();
  RelaxedCaptureMode relaxed;
  int device = 0;
  if (cudaError_t error = cudaGetDevice(&device); error != cudaSuccess) {
    return CudaError("cudaGetDevice", error);
  }
  const L2Flusher flusher(options.flush_l2, device, stream);
  const auto synchronize = [&]() -> absl::Status {
    if (cudaError_t error = cudaStreamSynchronize(stream); error != cudaSuccess) {
      return CudaError("synchronizing the tuning runs", error);
    }
    return absl::OkStatus();
  };
  const auto record = [&](cudaEvent_t event) -> absl::Status {
    if (cudaError_t error = cudaEventRecord(event, stream); error != cudaSuccess) {
      return CudaError("cudaEventRecord", error);
    }
    return absl::OkStatus();
  };

  // First pass: the heuristic's choice (a failure here is the call's failure).
  EventPool probe;
  if (absl::Status s = probe.Create(3); !s.ok()) return s;
  absl::Status status = Launch(plan, plan.candidates[0], mm, stream);
  if (status.ok()) status = record(probe[0]);
  if (status.ok()) status = flusher.Flush();
  if (status.ok()) status = record(probe[1]);
  if (status.ok()) status = Launch(plan, plan.candidates[0], mm, stream);
  if (status.ok()) status = record(probe[2]);
  if (status.ok()) status = synchronize();
  if (!status.ok()) return status;
  const double flush_us = std::max(0.0, ElapsedUs(probe[0], probe[1]));
  const double first_us = ElapsedUs(probe[1], probe[2]);
  if (first_us < 0) return absl::InternalError(absl::StrCat(kName, ": timing the first choice"));

  // The budget: n candidates cost about n (run_us + iterations (flush_us + run_us)) if they are
  // about as fast as the first (at least 1 us each, against dividing by 0).
  const double budget = options.tuning_budget_us;
  const double run_us = std::max(first_us, 1.0);
  const double per_run = run_us + flush_us;
  size_t timed = count;
  int iterations =
      static_cast<int>(std::clamp((budget / static_cast<double>(count) - run_us) / per_run, 0.0,
                                  static_cast<double>(options.timing_iterations)));
  if (iterations < 1) {
    iterations = 1;
    timed = static_cast<size_t>(
        std::clamp(budget / (run_us + per_run), 0.0, static_cast<double>(count)));
  }
  if (timed < 2) {
    Settle(plan, 0,
           absl::StrCat("heuristic's first of ", count, ", untuned: ", Rounded(first_us),
                        " us per call is over the tuning budget of ", budget, " us"));
    return absl::OkStatus();
  }

  // Second pass.
  EventPool events;
  if (absl::Status s = events.Create(2 * timed * iterations); !s.ok()) return s;
  std::vector<bool> ran(timed, false);
  for (size_t i = 0; i < timed; ++i) {
    // A candidate that cuBLASLt refuses at launch is left out (the first choice ran above).
    if (!Launch(plan, plan.candidates[i], mm, stream).ok()) continue;
    bool ok = true;
    for (int it = 0; it < iterations && ok; ++it) {
      const size_t e = 2 * (i * iterations + it);
      ok = flusher.Flush().ok() && record(events[e]).ok() &&
           Launch(plan, plan.candidates[i], mm, stream).ok() && record(events[e + 1]).ok();
    }
    ran[i] = ok;
  }
  if (absl::Status s = synchronize(); !s.ok()) return s;
  std::vector<double> median(timed, -1.0);
  for (size_t i = 0; i < timed; ++i) {
    if (!ran[i]) continue;
    std::vector<double> times;
    for (int it = 0; it < iterations; ++it) {
      const size_t e = 2 * (i * iterations + it);
      times.push_back(ElapsedUs(events[e], events[e + 1]));
    }
    std::sort(times.begin(), times.end());
    if (times.front() >= 0) median[i] = times[(times.size() - 1) / 2];
  }
  const double baseline = median[0] >= 0 ? median[0] : first_us;
  size_t best = 0;
  for (size_t i = 1; i < timed; ++i) {
    if (median[i] >= 0 && median[i] < (best == 0 ? baseline : median[best])) best = i;
  }
  if (best != 0 && median[best] > (1.0 - kMinimumGain) * baseline) best = 0;
  Settle(plan, best,
         absl::StrCat("tuned: candidate ", best, " of ", count, " (", timed, " timed, ", iterations,
                      iterations == 1 ? " run" : " runs", " each",
                      flusher.ok() ? ", L2 flushed" : ", warm L2",
                      "): ", Rounded(best == 0 ? baseline : median[best]),
                      " us, heuristic's first ", Rounded(baseline), " us"));
  return absl::OkStatus();
}

absl::Status CublasLtGemm::State::Execute(const Bf16GemmArgs& a, const Action& action,
                                          cudaStream_t stream) {
  const Plan* described = nullptr;
  const auto matmul = [&](const Matmul& mm) -> absl::Status {
    absl::StatusOr<Plan*> found = FindOrMakePlan(mm, action.create);
    if (!found.ok()) return found.status();
    Plan& plan = **found;
    if (action.tune && !plan.settled) {
      if (absl::Status status = Tune(plan, mm, stream); !status.ok()) return status;
    }
    if (action.max_candidates != nullptr) {
      *action.max_candidates =
          std::max(*action.max_candidates, static_cast<int>(plan.candidates.size()));
    }
    const size_t index = action.candidate < 0 ? plan.chosen
                                              : std::min(static_cast<size_t>(action.candidate),
                                                         plan.candidates.size() - 1);
    if (action.description != nullptr && &plan != described) {
      described = &plan;
      absl::StrAppend(action.description, action.description->empty() ? "" : " | ", "m ", mm.m,
                      ": ", DescribeConfig(plan.candidates[index].algo), "; ",
                      action.candidate < 0
                          ? plan.how
                          : absl::StrCat("candidate ", index, " of ", plan.candidates.size()));
    }
    if (!action.launch) return absl::OkStatus();
    return Launch(plan, plan.candidates[index], mm, stream);
  };
  Matmul mm{.m = a.m,
            .n = a.n,
            .k = a.k,
            .x = a.x,
            .x_stride = a.x_stride,
            .w = a.w,
            .w_stride = a.w_stride,
            .y = a.y,
            .y_stride = a.y_stride,
            .y_type = a.y_type,
            .workspace = workspace,
            .workspace_bytes = workspace_bytes};
  if (a.bias == nullptr) return matmul(mm);
  if (BiasEpilogueTrusted(a)) {
    mm.bias = a.bias;
    return matmul(mm);
  }
  if (a.y_type == GemmElementType::kFloat32) {
    // The float32 GEMM into y, then the bias in place: the same two float32 roundings (product
    // sum, then + bias) as the epilogue.
    if (absl::Status status = matmul(mm); !status.ok()) return status;
    if (!action.launch) return absl::OkStatus();
    return AddBias({.rows = a.m,
                    .cols = a.n,
                    .x = static_cast<const float*>(a.y),
                    .x_stride = a.y_stride,
                    .bias = a.bias,
                    .bias_type = a.bias_type,
                    .y = a.y,
                    .y_stride = a.y_stride,
                    .y_type = GemmElementType::kFloat32},
                   stream);
  }
  // bf16 output: rounding the GEMM to bf16 before adding the bias would round twice (errors of
  // 2^-9 |x w|, unbounded relative to |y| where x w and the bias cancel). So each chunk of rows
  // goes to a float32 scratch and AddBias rounds x w + bias once, as a correct epilogue does.
  const BiasFallbackLayout layout = MakeBiasFallbackLayout(a.m, a.n, workspace_bytes);
  if (layout.chunk_rows == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        kName, ": a bf16 output with a bias that cuBLASLt's epilogue cannot add (n = ", a.n,
        ", or an operand not 16-byte aligned) needs a workspace of at least ",
        2 * 4 * layout.scratch_stride, " bytes for its float32 scratch; have ", workspace_bytes));
  }
  float* const scratch = static_cast<float*>(workspace);
  mm.y = scratch;
  mm.y_stride = layout.scratch_stride;
  mm.y_type = GemmElementType::kFloat32;
  mm.workspace = static_cast<char*>(workspace) + layout.scratch_bytes;
  mm.workspace_bytes = workspace_bytes - layout.scratch_bytes;
  for (int64_t first = 0; first < a.m; first += layout.chunk_rows) {
    // x's row offset keeps its alignment class (a multiple of the row stride): same plan.
    mm.m = std::min(layout.chunk_rows, a.m - first);
    mm.x = a.x + first * a.x_stride;
    if (absl::Status status = matmul(mm); !status.ok()) return status;
    if (!action.launch) continue;
    // Stream order: the next chunk's GEMM overwrites the scratch only after this has read it.
    absl::Status status = AddBias({.rows = mm.m,
                                   .cols = a.n,
                                   .x = scratch,
                                   .x_stride = layout.scratch_stride,
                                   .bias = a.bias,
                                   .bias_type = a.bias_type,
                                   .y = static_cast<__nv_bfloat16*>(a.y) + first * a.y_stride,
                                   .y_stride = a.y_stride,
                                   .y_type = GemmElementType::kBf16},
                                  stream);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

CublasLtGemm::CublasLtGemm(cublasLtContext* handle, void* workspace, size_t workspace_bytes,
                           const Options& options)
    : state_(std::make_unique<State>()) {
  state_->handle = handle;
  state_->workspace = workspace;
  state_->workspace_bytes = workspace_bytes;
  state_->options = options;
}

CublasLtGemm::~CublasLtGemm() {
  state_->plans.clear();
  cublasLtDestroy(state_->handle);
}

absl::StatusOr<std::unique_ptr<CublasLtGemm>> CublasLtGemm::Create(void* workspace,
                                                                   size_t workspace_bytes) {
  return Create(workspace, workspace_bytes, Options());
}

absl::StatusOr<std::unique_ptr<CublasLtGemm>> CublasLtGemm::Create(void* workspace,
                                                                   size_t workspace_bytes,
                                                                   const Options& options) {
  if (workspace == nullptr && workspace_bytes > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": workspace is null but workspace_bytes = ", workspace_bytes));
  }
  if (reinterpret_cast<uintptr_t>(workspace) % 256 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": workspace must be 256-byte aligned"));
  }
  if (absl::Status status = ValidateOptions(options); !status.ok()) return status;
  cublasLtHandle_t handle = nullptr;
  if (cublasStatus_t status = cublasLtCreate(&handle); status != CUBLAS_STATUS_SUCCESS) {
    return CublasError("cublasLtCreate", status);
  }
  return std::unique_ptr<CublasLtGemm>(
      new CublasLtGemm(handle, workspace, workspace_bytes, options));
}

absl::Status CublasLtGemm::Prepare(const Bf16GemmArgs& args, cudaStream_t stream) {
  absl::StatusOr<Bf16GemmArgs> normalized = Normalize(args);
  if (!normalized.ok()) return normalized.status();
  if (normalized->m == 0 || normalized->n == 0) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->Execute(*normalized, {.tune = state_->options.autotune}, stream);
}

absl::Status CublasLtGemm::Run(const Bf16GemmArgs& args, cudaStream_t stream) {
  absl::StatusOr<Bf16GemmArgs> normalized = Normalize(args);
  if (!normalized.ok()) return normalized.status();
  if (normalized->m == 0 || normalized->n == 0) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->Execute(*normalized, {.tune = state_->options.autotune, .launch = true}, stream);
}

bool CublasLtGemm::UsesBiasEpilogue(const Bf16GemmArgs& args) {
  absl::StatusOr<Bf16GemmArgs> normalized = Normalize(args);
  return normalized.ok() && normalized->bias != nullptr && BiasEpilogueTrusted(*normalized);
}

int64_t CublasLtGemm::heuristic_queries() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->heuristic_queries;
}

int64_t CublasLtGemm::tunings() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->tunings;
}

absl::StatusOr<int> CublasLtGemm::CandidateCount(const Bf16GemmArgs& args) {
  absl::StatusOr<Bf16GemmArgs> normalized = Normalize(args);
  if (!normalized.ok()) return normalized.status();
  if (normalized->m == 0 || normalized->n == 0) return 0;
  int count = 0;
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (absl::Status status = state_->Execute(*normalized, {.max_candidates = &count}, nullptr);
      !status.ok()) {
    return status;
  }
  return count;
}

absl::Status CublasLtGemm::RunCandidate(const Bf16GemmArgs& args, int candidate,
                                        cudaStream_t stream) {
  if (candidate < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": candidate = ", candidate, " must be >= 0"));
  }
  absl::StatusOr<Bf16GemmArgs> normalized = Normalize(args);
  if (!normalized.ok()) return normalized.status();
  if (normalized->m == 0 || normalized->n == 0) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->Execute(*normalized, {.launch = true, .candidate = candidate}, stream);
}

absl::StatusOr<std::string> CublasLtGemm::DescribeAlgorithm(const Bf16GemmArgs& args,
                                                            int candidate) const {
  absl::StatusOr<Bf16GemmArgs> normalized = Normalize(args);
  if (!normalized.ok()) return normalized.status();
  if (normalized->m == 0 || normalized->n == 0) return std::string("nothing to do");
  std::string description;
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (absl::Status status = state_->Execute(
          *normalized, {.create = false, .candidate = candidate, .description = &description},
          nullptr);
      !status.ok()) {
    return status;
  }
  return description;
}

}  // namespace flatfleet::cuda
