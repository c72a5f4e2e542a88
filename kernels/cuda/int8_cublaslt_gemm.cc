#include "kernels/cuda/int8_cublaslt_gemm.h"

#include <cublasLt.h>

#include <map>
#include <mutex>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/alignment.h"

namespace flatfleet::cuda {
namespace {

constexpr const char* kName = "CublasLtInt8Gemm";
// Distinct problems kept; prefill chunks of many sizes could otherwise grow the cache forever.
constexpr size_t kMaxPlans = 4096;

absl::Status CublasError(const char* what, cublasStatus_t status) {
  return absl::InternalError(
      absl::StrCat(kName, ": ", what, " failed: ", cublasLtGetStatusName(status)));
}

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace_bytes = 0;
  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

}  // namespace

struct CublasLtInt8Gemm::State {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  std::mutex mutex;
  std::map<std::tuple<int64_t, int64_t, int64_t>, std::unique_ptr<Plan>> plans;

  ~State() {
    plans.clear();
    if (handle) cublasLtDestroy(handle);
  }

  absl::StatusOr<const Plan*> FindOrMake(const Int8GemmArgs& args) {
    const auto key = std::make_tuple(args.m, args.n, args.k);
    if (auto it = plans.find(key); it != plans.end()) return it->second.get();
    auto plan = std::make_unique<Plan>();
    cublasStatus_t status = cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32I, CUDA_R_32I);
    if (status != CUBLAS_STATUS_SUCCESS) return CublasError("cublasLtMatmulDescCreate", status);
    const cublasOperation_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;
    status = cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &transa,
                                            sizeof(transa));
    if (status == CUBLAS_STATUS_SUCCESS) {
      status = cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &transb,
                                              sizeof(transb));
    }
    if (status != CUBLAS_STATUS_SUCCESS) return CublasError("setting the transposes", status);
    const auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
    status = cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_8I, u(args.k), u(args.n), args.k);
    if (status == CUBLAS_STATUS_SUCCESS) {
      status = cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_8I, u(args.k), u(args.m), args.k);
    }
    if (status == CUBLAS_STATUS_SUCCESS) {
      status = cublasLtMatrixLayoutCreate(&plan->d, CUDA_R_32I, u(args.n), u(args.m), args.n);
    }
    if (status != CUBLAS_STATUS_SUCCESS) return CublasError("cublasLtMatrixLayoutCreate", status);
    cublasLtMatmulPreference_t preference = nullptr;
    status = cublasLtMatmulPreferenceCreate(&preference);
    if (status != CUBLAS_STATUS_SUCCESS) return CublasError("preference", status);
    const uint64_t workspace_limit = workspace_bytes;
    status =
        cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                             &workspace_limit, sizeof(workspace_limit));
    cublasLtMatmulHeuristicResult_t result{};
    int returned = 0;
    if (status == CUBLAS_STATUS_SUCCESS) {
      status = cublasLtMatmulAlgoGetHeuristic(handle, plan->desc, plan->a, plan->b, plan->d,
                                              plan->d, preference, 1, &result, &returned);
    }
    cublasLtMatmulPreferenceDestroy(preference);
    if (status != CUBLAS_STATUS_SUCCESS || returned == 0 || result.state != CUBLAS_STATUS_SUCCESS) {
      return absl::UnimplementedError(absl::StrCat(
          kName, ": cuBLASLt offers no INT8 algorithm for m = ", args.m, ", n = ", args.n,
          ", k = ", args.k, " (", cublasLtGetStatusName(status), ")"));
    }
    plan->algo = result.algo;
    plan->workspace_bytes = result.workspaceSize;
    if (plans.size() >= kMaxPlans) plans.clear();
    const Plan* raw = plan.get();
    plans.emplace(key, std::move(plan));
    return raw;
  }
};

CublasLtInt8Gemm::CublasLtInt8Gemm(std::unique_ptr<State> state) : state_(std::move(state)) {}
CublasLtInt8Gemm::~CublasLtInt8Gemm() = default;

absl::StatusOr<std::unique_ptr<CublasLtInt8Gemm>> CublasLtInt8Gemm::Create(void* workspace,
                                                                           size_t workspace_bytes) {
  auto state = std::make_unique<State>();
  const cublasStatus_t status = cublasLtCreate(&state->handle);
  if (status != CUBLAS_STATUS_SUCCESS) return CublasError("cublasLtCreate", status);
  state->workspace = workspace_bytes > 0 ? workspace : nullptr;
  state->workspace_bytes = state->workspace != nullptr ? workspace_bytes : 0;
  return std::unique_ptr<CublasLtInt8Gemm>(new CublasLtInt8Gemm(std::move(state)));
}

absl::Status CublasLtInt8Gemm::Run(const Int8GemmArgs& args, cudaStream_t stream) {
  if (args.m <= 0 || args.n <= 0 || args.k <= 0 || args.k % 16 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": bad shape m = ", args.m,
                                                   ", n = ", args.n, ", k = ", args.k,
                                                   " (k a positive multiple of 16)"));
  }
  if (args.x == nullptr || args.w == nullptr || args.sums == nullptr || !Aligned16(args.x) ||
      !Aligned16(args.w) || !Aligned16(args.sums)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": x, w and sums must be 16-byte aligned device pointers"));
  }
  std::lock_guard<std::mutex> lock(state_->mutex);
  absl::StatusOr<const Plan*> plan = state_->FindOrMake(args);
  if (!plan.ok()) return plan.status();
  const int32_t alpha = 1, beta = 0;
  const cublasStatus_t status =
      cublasLtMatmul(state_->handle, (*plan)->desc, &alpha, args.w, (*plan)->a, args.x, (*plan)->b,
                     &beta, args.sums, (*plan)->d, args.sums, (*plan)->d, &(*plan)->algo,
                     state_->workspace, state_->workspace_bytes, stream);
  if (status != CUBLAS_STATUS_SUCCESS) return CublasError("cublasLtMatmul", status);
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
