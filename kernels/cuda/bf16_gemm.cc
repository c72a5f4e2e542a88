#include "kernels/cuda/bf16_gemm.h"

#include <cublasLt.h>

#include <compare>
#include <map>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"

namespace flatfleet::cuda {
namespace {

constexpr char kName[] = "bf16 GEMM";
// Heuristic candidates requested per problem; the first usable one (best predicted) is kept.
constexpr int kHeuristicCandidates = 8;

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

// Everything the chosen algorithm depends on.
struct ProblemKey {
  int device = 0;
  int64_t m = 0, n = 0, k = 0;
  int64_t x_stride = 0, w_stride = 0, y_stride = 0;
  GemmElementType y_type = GemmElementType::kBf16;
  bool has_bias = false;
  uint32_t x_alignment = 0, w_alignment = 0, y_alignment = 0, bias_alignment = 0;
  auto operator<=>(const ProblemKey&) const = default;
};

// The cuBLASLt descriptors and algorithm of one problem.
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr;  // W: column-major [k, n], op T
  cublasLtMatrixLayout_t b = nullptr;  // X: column-major [k, m], op N
  cublasLtMatrixLayout_t d = nullptr;  // Y: column-major [n, m] (also C, unused with beta = 0)
  cublasLtMatmulAlgo_t algo{};

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

}  // namespace

struct CublasLtGemm::State {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  mutable std::mutex mutex;
  std::map<ProblemKey, std::unique_ptr<Plan>> plans;  // guarded by mutex
  int64_t heuristic_queries = 0;                      // guarded by mutex

  // Returns the cached plan of `args` (normalized), choosing it first if needed.
  absl::StatusOr<Plan*> FindOrMakePlan(const Bf16GemmArgs& args);
};

absl::StatusOr<Plan*> CublasLtGemm::State::FindOrMakePlan(const Bf16GemmArgs& args) {
  ProblemKey key;
  if (cudaError_t error = cudaGetDevice(&key.device); error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, ": cudaGetDevice: ", cudaGetErrorString(error)));
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
  if (auto it = plans.find(key); it != plans.end()) return it->second.get();

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
    const int32_t bias_type = CudaType(args.bias_type);
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
                            static_cast<uint64_t>(workspace_bytes));
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
  bool found = false;
  for (const uint32_t mask : {static_cast<uint32_t>(CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE),
                              static_cast<uint32_t>(CUBLASLT_REDUCTION_SCHEME_MASK)}) {
    status = preference.Set(CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, mask);
    if (status != CUBLAS_STATUS_SUCCESS) return CublasError("matmul preference", status);
    cublasLtMatmulHeuristicResult_t results[kHeuristicCandidates] = {};
    int returned = 0;
    ++heuristic_queries;
    status =
        cublasLtMatmulAlgoGetHeuristic(handle, plan->desc, plan->a, plan->b, plan->d, plan->d,
                                       preference.get(), kHeuristicCandidates, results, &returned);
    if (status != CUBLAS_STATUS_SUCCESS) continue;
    for (int i = 0; i < returned && !found; ++i) {
      if (results[i].state == CUBLAS_STATUS_SUCCESS &&
          results[i].workspaceSize <= workspace_bytes &&
          AccumulatesInFloat32(results[i].algo, float_out)) {
        plan->algo = results[i].algo;
        found = true;
      }
    }
    if (found) break;
  }
  if (!found) {
    return absl::UnimplementedError(absl::StrCat(
        kName, ": cuBLASLt offers no algorithm for m = ", args.m, ", n = ", args.n,
        ", k = ", args.k, " (x_stride ", args.x_stride, ", w_stride ", args.w_stride, ", y_stride ",
        args.y_stride, "; alignment in bytes x ", key.x_alignment, ", w ", key.w_alignment, ", y ",
        key.y_alignment, "; y_type ", TypeName(args.y_type), key.has_bias ? ", bias" : "",
        "; workspace ", workspace_bytes, " bytes; last heuristic status ",
        cublasLtGetStatusName(status), ")"));
  }
  Plan* raw = plan.get();
  plans.emplace(key, std::move(plan));
  return raw;
}

CublasLtGemm::CublasLtGemm(cublasLtContext* handle, void* workspace, size_t workspace_bytes)
    : state_(std::make_unique<State>()) {
  state_->handle = handle;
  state_->workspace = workspace;
  state_->workspace_bytes = workspace_bytes;
}

CublasLtGemm::~CublasLtGemm() {
  state_->plans.clear();
  cublasLtDestroy(state_->handle);
}

absl::StatusOr<std::unique_ptr<CublasLtGemm>> CublasLtGemm::Create(void* workspace,
                                                                   size_t workspace_bytes) {
  if (workspace == nullptr && workspace_bytes > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": workspace is null but workspace_bytes = ", workspace_bytes));
  }
  if (reinterpret_cast<uintptr_t>(workspace) % 256 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": workspace must be 256-byte aligned"));
  }
  cublasLtHandle_t handle = nullptr;
  if (cublasStatus_t status = cublasLtCreate(&handle); status != CUBLAS_STATUS_SUCCESS) {
    return CublasError("cublasLtCreate", status);
  }
  return std::unique_ptr<CublasLtGemm>(new CublasLtGemm(handle, workspace, workspace_bytes));
}

absl::Status CublasLtGemm::Prepare(const Bf16GemmArgs& args) {
  absl::StatusOr<Bf16GemmArgs> normalized = Normalize(args);
  if (!normalized.ok()) return normalized.status();
  if (normalized->m == 0 || normalized->n == 0) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->FindOrMakePlan(*normalized).status();
}

absl::Status CublasLtGemm::Run(const Bf16GemmArgs& args, cudaStream_t stream) {
  absl::StatusOr<Bf16GemmArgs> normalized = Normalize(args);
  if (!normalized.ok()) return normalized.status();
  const Bf16GemmArgs& a = *normalized;
  if (a.m == 0 || a.n == 0) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(state_->mutex);
  absl::StatusOr<Plan*> plan = state_->FindOrMakePlan(a);
  if (!plan.ok()) return plan.status();
  Plan& p = **plan;
  if (a.bias != nullptr) {
    const cublasStatus_t status = cublasLtMatmulDescSetAttribute(
        p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &a.bias, sizeof(a.bias));
    if (status != CUBLAS_STATUS_SUCCESS) return CublasError("setting the bias pointer", status);
  }
  const float alpha = 1.0f, beta = 0.0f;
  const cublasStatus_t status =
      cublasLtMatmul(state_->handle, p.desc, &alpha, a.w, p.a, a.x, p.b, &beta, a.y, p.d, a.y, p.d,
                     &p.algo, state_->workspace, state_->workspace_bytes, stream);
  if (status != CUBLAS_STATUS_SUCCESS) return CublasError("cublasLtMatmul", status);
  return absl::OkStatus();
}

int64_t CublasLtGemm::heuristic_queries() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->heuristic_queries;
}

}  // namespace flatfleet::cuda
