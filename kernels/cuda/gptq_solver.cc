#include "kernels/cuda/gptq_solver.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/gptq_solver_launch.h"

namespace flatfleet::cuda {
namespace {

constexpr char kName[] = "GPTQ solver";
constexpr size_t kAlignment = 256;

size_t AlignUp(size_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

absl::Status CudaError(const char* what, cudaError_t error) {
  if (error == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(kName, ": ", what, ": ", cudaGetErrorString(error)));
}
absl::Status CublasError(const char* what, cublasStatus_t status) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(kName, ": ", what, " failed (cuBLAS status ", static_cast<int>(status), ")"));
}
absl::Status CusolverError(const char* what, cusolverStatus_t status) {
  if (status == CUSOLVER_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(kName, ": ", what, " failed (cuSOLVER status ", static_cast<int>(status), ")"));
}

#define FF_GPTQ_RETURN_IF_ERROR(expr)        \
  do {                                       \
    absl::Status ff_status_ = (expr);        \
    if (!ff_status_.ok()) return ff_status_; \
  } while (false)

// cuSOLVER's buffer for potrf and potri of a k x k matrix, in doubles.
absl::StatusOr<int> CusolverBufferDoubles(int64_t k, cusolverDnHandle_t cusolver) {
  int potrf = 0, potri = 0;
  const int n = static_cast<int>(k);
  // The matrix pointer is not dereferenced by the size queries.
  FF_GPTQ_RETURN_IF_ERROR(CusolverError(
      "potrf_bufferSize",
      cusolverDnDpotrf_bufferSize(cusolver, CUBLAS_FILL_MODE_UPPER, n, nullptr, n, &potrf)));
  FF_GPTQ_RETURN_IF_ERROR(CusolverError(
      "potri_bufferSize",
      cusolverDnDpotri_bufferSize(cusolver, CUBLAS_FILL_MODE_UPPER, n, nullptr, n, &potri)));
  return std::max({potrf, potri, 1});
}

struct Workspace {
  double* wt = nullptr;
  double* errors = nullptr;
  int8_t* dead = nullptr;
  double* cusolver = nullptr;
  int cusolver_doubles = 0;
};

// The one layout both GptqSolverWorkspaceBytes and the solve use.
size_t Carve(int64_t rows, int64_t cols, int64_t block_size, int cusolver_doubles, char* base,
             Workspace* out) {
  size_t offset = 0;
  auto take = [&](size_t bytes) {
    char* at = base == nullptr ? nullptr : base + offset;
    offset += AlignUp(bytes);
    return at;
  };
  Workspace w;
  w.wt = reinterpret_cast<double*>(take(sizeof(double) * rows * cols));
  w.errors = reinterpret_cast<double*>(take(sizeof(double) * rows * std::min(block_size, cols)));
  w.dead = reinterpret_cast<int8_t*>(take(cols));
  w.cusolver = reinterpret_cast<double*>(take(sizeof(double) * cusolver_doubles));
  w.cusolver_doubles = cusolver_doubles;
  if (out != nullptr) *out = w;
  return offset;
}

constexpr int64_t kMaxCusolverDimension = 46340;  // k * k must fit the legacy API's int32

}  // namespace

absl::StatusOr<size_t> GptqSolverWorkspaceBytes(int64_t rows, int64_t cols, int64_t block_size,
                                                cusolverDnHandle_t cusolver) {
  if (rows <= 0 || cols <= 0 || cols > kMaxCusolverDimension || block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        kName, ": bad shape rows = ", rows, ", cols = ", cols, ", block_size = ", block_size));
  }
  if (cusolver == nullptr) return absl::InvalidArgumentError(absl::StrCat(kName, ": no cusolver"));
  auto doubles = CusolverBufferDoubles(cols, cusolver);
  if (!doubles.ok()) return doubles.status();
  return Carve(rows, cols, block_size, *doubles, nullptr, nullptr);
}

absl::Status SolveGptqOnDevice(const DeviceGptqSolve& args, cudaStream_t stream) {
  const GptqWeightFormat& format = args.format;
  if (args.rows <= 0 || args.cols <= 0 || args.cols > kMaxCusolverDimension) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": bad shape rows = ", args.rows, ", cols = ", args.cols));
  }
  if (format.bits < 2 || format.bits > 8) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": format.bits = ", format.bits));
  }
  if (format.balanced && !format.symmetric) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": format.balanced needs symmetric"));
  }
  if (format.group_size < 0 || (format.group_size > 0 && args.cols % format.group_size != 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        kName, ": format.group_size = ", format.group_size, " does not divide cols = ", args.cols));
  }
  if (!(format.clip_ratio > 0.0f && format.clip_ratio <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": format.clip_ratio"));
  }
  if (!(args.damp >= 0.0)) return absl::InvalidArgumentError(absl::StrCat(kName, ": damp < 0"));
  if (args.block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": block_size <= 0"));
  }
  if (args.weight == nullptr) return absl::InvalidArgumentError(absl::StrCat(kName, ": weight"));
  if (args.hessian == nullptr) return absl::InvalidArgumentError(absl::StrCat(kName, ": hessian"));
  if (args.codes == nullptr) return absl::InvalidArgumentError(absl::StrCat(kName, ": codes"));
  if (args.scales == nullptr) return absl::InvalidArgumentError(absl::StrCat(kName, ": scales"));
  if (!format.symmetric && args.zero_points == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": zero_points (asymmetric format)"));
  }
  if (args.status == nullptr) return absl::InvalidArgumentError(absl::StrCat(kName, ": status"));
  if (args.cublas == nullptr || args.cusolver == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": cublas / cusolver handle"));
  }
  if (args.workspace == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": workspace"));
  }
  auto doubles = CusolverBufferDoubles(args.cols, args.cusolver);
  if (!doubles.ok()) return doubles.status();
  Workspace ws;
  const size_t needed = Carve(args.rows, args.cols, args.block_size, *doubles,
                              static_cast<char*>(args.workspace), &ws);
  if (args.workspace_bytes < needed) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": workspace_bytes = ", args.workspace_bytes, " < ", needed));
  }

  const int64_t n = args.rows, k = args.cols;
  const int kk = static_cast<int>(k);
  internal::GptqFormatParams f;
  f.qmax = (1 << (format.bits - 1)) - 1;
  f.qmin = format.symmetric && !format.balanced ? -f.qmax : -(f.qmax + 1);
  f.symmetric = format.symmetric;
  f.balanced = format.balanced;
  f.clip_ratio = format.clip_ratio;
  f.per_channel = format.group_size == 0;
  f.group_size = f.per_channel ? k : format.group_size;
  f.groups = k / f.group_size;
  int* flags = &args.status->flags;

  FF_GPTQ_RETURN_IF_ERROR(CublasError("cublasSetStream", cublasSetStream(args.cublas, stream)));
  FF_GPTQ_RETURN_IF_ERROR(
      CusolverError("cusolverDnSetStream", cusolverDnSetStream(args.cusolver, stream)));
  FF_GPTQ_RETURN_IF_ERROR(
      CudaError("check", internal::LaunchGptqCheckHessian(args.hessian, k, flags, stream)));
  FF_GPTQ_RETURN_IF_ERROR(
      CudaError("dampen", internal::LaunchGptqDampen(args.hessian, k, args.damp, ws.dead, stream)));
  FF_GPTQ_RETURN_IF_ERROR(CudaError(
      "transpose", internal::LaunchGptqTransposeWeight(args.weight, n, k, ws.dead, ws.wt, stream)));
  if (f.per_channel) {
    FF_GPTQ_RETURN_IF_ERROR(
        CudaError("per-channel parameters",
                  internal::LaunchGptqPerChannelParameters(ws.wt, n, k, f, args.scales,
                                                           args.zero_points, flags, stream)));
  }
  // H = R^T R; H^-1 (upper triangle); H^-1 = U^T U.
  FF_GPTQ_RETURN_IF_ERROR(CusolverError(
      "potrf(H)", cusolverDnDpotrf(args.cusolver, CUBLAS_FILL_MODE_UPPER, kk, args.hessian, kk,
                                   ws.cusolver, ws.cusolver_doubles, &args.status->cholesky_info)));
  FF_GPTQ_RETURN_IF_ERROR(CusolverError(
      "potri", cusolverDnDpotri(args.cusolver, CUBLAS_FILL_MODE_UPPER, kk, args.hessian, kk,
                                ws.cusolver, ws.cusolver_doubles, &args.status->inverse_info)));
  FF_GPTQ_RETURN_IF_ERROR(CusolverError(
      "potrf(H^-1)",
      cusolverDnDpotrf(args.cusolver, CUBLAS_FILL_MODE_UPPER, kk, args.hessian, kk, ws.cusolver,
                       ws.cusolver_doubles, &args.status->inverse_cholesky_info)));
  const double* u = args.hessian;
  const double minus_one = -1.0, one = 1.0;
  for (int64_t b1 = 0; b1 < k; b1 += args.block_size) {
    const int64_t b2 = std::min(k, b1 + args.block_size);
    FF_GPTQ_RETURN_IF_ERROR(CudaError(
        "quantize block", internal::LaunchGptqQuantizeBlock(
                              ws.wt, n, k, u, b1, b2, f, args.codes, args.scales, args.zero_points,
                              ws.errors, args.pre_rounding, flags, stream)));
    if (b2 == k) break;
    // W[:, b2:] -= E U[b1:b2, b2:], column-major: W is wt (ld n), U(p, j) at u[p + j k].
    FF_GPTQ_RETURN_IF_ERROR(CublasError(
        "cublasDgemm", cublasDgemm(args.cublas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n),
                                   static_cast<int>(k - b2), static_cast<int>(b2 - b1), &minus_one,
                                   ws.errors, static_cast<int>(n), u + b1 + b2 * k, kk, &one,
                                   ws.wt + b2 * n, static_cast<int>(n))));
  }
  return absl::OkStatus();
}

absl::Status GptqSolverError(const GptqSolverStatus& status) {
  if (status.flags & internal::kGptqNonFiniteHessian) {
    return absl::InvalidArgumentError("GPTQ: non-finite Hessian entry");
  }
  if (status.flags & internal::kGptqNonFiniteWeight) {
    // Callers check the input weights (quant/gptq_device_backend.cc), so this is the error
    // updates overflowing: a Hessian whose Cholesky factor has pivots cuSOLVER still took.
    return absl::FailedPreconditionError(
        "GPTQ: a weight became non-finite in the error updates: the Hessian is numerically "
        "singular (raise the dampening), or the weights were not finite");
  }
  if (status.cholesky_info > 0 || status.inverse_info > 0 || status.inverse_cholesky_info > 0) {
    const int at = status.cholesky_info > 0  ? status.cholesky_info
                   : status.inverse_info > 0 ? status.inverse_info
                                             : status.inverse_cholesky_info;
    return absl::FailedPreconditionError(absl::StrCat(
        "GPTQ: the Hessian is not positive definite at column ", at - 1, " (raise the dampening)"));
  }
  if (status.cholesky_info < 0 || status.inverse_info < 0 || status.inverse_cholesky_info < 0) {
    return absl::InternalError("GPTQ: cuSOLVER rejected an argument");
  }
  if (status.flags & internal::kGptqScaleOverflow) {
    return absl::OutOfRangeError("GPTQ: a group scale exceeds the FP16 range");
  }
  return absl::OkStatus();
}

absl::Status AccumulateGramOnDevice(const DeviceGramAccumulate& args, cudaStream_t stream) {
  constexpr char kGram[] = "Gram accumulation";
  if (args.rows < 0 || args.cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kGram, ": bad shape rows = ", args.rows, ", cols = ", args.cols));
  }
  if (args.rows == 0) return absl::OkStatus();
  if (args.x == nullptr) return absl::InvalidArgumentError(absl::StrCat(kGram, ": x"));
  if (args.gram == nullptr) return absl::InvalidArgumentError(absl::StrCat(kGram, ": gram"));
  if (args.cublas == nullptr) return absl::InvalidArgumentError(absl::StrCat(kGram, ": cublas"));
  const int64_t chunk = static_cast<int64_t>(args.workspace_bytes / sizeof(double)) / args.cols;
  if (args.workspace == nullptr || chunk < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(kGram, ": workspace must hold at least cols = ", args.cols, " doubles"));
  }
  FF_GPTQ_RETURN_IF_ERROR(CublasError("cublasSetStream", cublasSetStream(args.cublas, stream)));
  const double one = 1.0;
  const int cols = static_cast<int>(args.cols);
  for (int64_t r0 = 0; r0 < args.rows; r0 += chunk) {
    const int64_t m = std::min(chunk, args.rows - r0);
    FF_GPTQ_RETURN_IF_ERROR(
        CudaError("widen", internal::LaunchWidenToDouble(args.x + r0 * args.cols, m * args.cols,
                                                         args.workspace, stream)));
    // The chunk is [m, cols] row-major = [cols, m] column-major: gram += A A^T.
    FF_GPTQ_RETURN_IF_ERROR(CublasError(
        "cublasDsyrk",
        cublasDsyrk(args.cublas, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, cols, static_cast<int>(m),
                    &one, args.workspace, cols, &one, args.gram, cols)));
  }
  return absl::OkStatus();
}

absl::Status MirrorGramUpperToLower(double* gram, int64_t cols, cudaStream_t stream) {
  if (gram == nullptr || cols <= 0) {
    return absl::InvalidArgumentError("Gram mirror: gram is null or cols <= 0");
  }
  return CudaError("mirror", internal::LaunchMirrorUpperToLower(gram, cols, stream));
}

}  // namespace flatfleet::cuda
