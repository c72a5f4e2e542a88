#include "kernels/cuda/embedding.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/embedding_launch.h"

namespace flatfleet::cuda {

absl::Status EmbeddingLookup(const DeviceEmbeddingLookup& args, cudaStream_t stream) {
  constexpr char kName[] = "embedding lookup";
  if (args.rows < 0 || args.hidden <= 0 || args.table_rows <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": bad shape rows = ", args.rows,
                                                   ", hidden = ", args.hidden,
                                                   ", table_rows = ", args.table_rows));
  }
  if (args.rows > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": rows = ", args.rows, " exceed one launch"));
  }
  if (args.table_dtype != EmbeddingTableType::kBfloat16 &&
      args.table_dtype != EmbeddingTableType::kFloat32) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": unknown table_dtype"));
  }
  if (args.rows == 0) return absl::OkStatus();
  if (args.table == nullptr)
    return absl::InvalidArgumentError(absl::StrCat(kName, ": table is null"));
  if (args.ids == nullptr) return absl::InvalidArgumentError(absl::StrCat(kName, ": ids is null"));
  if (args.out == nullptr) return absl::InvalidArgumentError(absl::StrCat(kName, ": out is null"));
  internal::EmbeddingParams params;
  params.table = args.table;
  params.table_is_bf16 = args.table_dtype == EmbeddingTableType::kBfloat16;
  params.table_rows = args.table_rows;
  params.hidden = args.hidden;
  params.ids = args.ids;
  params.rows = args.rows;
  params.out = args.out;
  if (const cudaError_t error = internal::LaunchEmbedding(params, stream); error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
