#include "kernels/cuda/bf16_gemm.h"

#include <cublasLt.h>

#include <algorithm>
#include <compare>
#include <map>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/bias_add.h"

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

  // Returns the cached plan of `args`, choosing it first if needed.
  absl::StatusOr<Plan*> FindOrMakePlan(const Matmul& args);
  // Finds the plan of every cuBLASLt call of `args` (normalized); with `launch`, also enqueues
  // the calls and the bias fallback's kernels on `stream`.
  absl::Status Execute(const Bf16GemmArgs& args, bool launch, cudaStream_t stream);
};

absl::StatusOr<Plan*> CublasLtGemm::State::FindOrMakePlan(const Matmul& args) {
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
  key.workspace_bytes = args.workspace_bytes;
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
          results[i].workspaceSize <= args.workspace_bytes &&
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
        "; workspace ", args.workspace_bytes, " bytes; last heuristic status ",
        cublasLtGetStatusName(status), ")"));
  }
  Plan* raw = plan.get();
  plans.emplace(key, std::move(plan));
  return raw;
}

absl::Status CublasLtGemm::State::Execute(const Bf16GemmArgs& a, bool launch, cudaStream_t stream) {
  const auto matmul = [&](const Matmul& mm) -> absl::Status {
    absl::StatusOr<Plan*> plan = FindOrMakePlan(mm);
    if (!plan.ok()) return plan.status();
    if (!launch) return absl::OkStatus();
    Plan& p = **plan;
    if (mm.bias != nullptr) {
      const cublasStatus_t status = cublasLtMatmulDescSetAttribute(
          p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &mm.bias, sizeof(mm.bias));
      if (status != CUBLAS_STATUS_SUCCESS) return CublasError("setting the bias pointer", status);
    }
    const float alpha = 1.0f, beta = 0.0f;
    const cublasStatus_t status =
        cublasLtMatmul(handle, p.desc, &alpha, mm.w, p.a, mm.x, p.b, &beta, mm.y, p.d, mm.y, p.d,
                       &p.algo, mm.workspace, mm.workspace_bytes, stream);
    if (status != CUBLAS_STATUS_SUCCESS) return CublasError("cublasLtMatmul", status);
    return absl::OkStatus();
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
    if (!launch) return absl::OkStatus();
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
    if (!launch) continue;
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
  return state_->Execute(*normalized, /*launch=*/false, nullptr);
}

absl::Status CublasLtGemm::Run(const Bf16GemmArgs& args, cudaStream_t stream) {
  absl::StatusOr<Bf16GemmArgs> normalized = Normalize(args);
  if (!normalized.ok()) return normalized.status();
  if (normalized->m == 0 || normalized->n == 0) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->Execute(*normalized, /*launch=*/true, stream);
}

bool CublasLtGemm::UsesBiasEpilogue(const Bf16GemmArgs& args) {
  absl::StatusOr<Bf16GemmArgs> normalized = Normalize(args);
  return normalized.ok() && normalized->bias != nullptr && BiasEpilogueTrusted(*normalized);
}

int64_t CublasLtGemm::heuristic_queries() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->heuristic_queries;
}

}  // namespace flatfleet::cuda
