#include "kernels/cuda/paged_attention.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/alignment.h"
#include "kernels/cuda/paged_attention_launch.h"

namespace flatfleet::cuda {
namespace {

constexpr char kName[] = "PagedAttention";
constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxGridYZ = 65535;

absl::Status Invalid(const char* field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(kName, ": ", field, " ", why));
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

bool UsesTensorCores(const PagedAttentionParams& p) {
  return !p.force_reference_kernel && (p.head_dim == 64 || p.head_dim == 128);
}

// The launch arguments of validated params, workspace pointers left null.
internal::PagedAttentionArgs Resolve(const PagedAttentionParams& p) {
  internal::PagedAttentionArgs args;
  args.q = p.q;
  args.out = p.out;
  args.cache = p.cache;
  args.block_tables = p.block_tables;
  args.max_blocks_per_sequence = p.max_blocks_per_sequence;
  args.query_starts = p.query_starts;
  args.context_lengths = p.context_lengths;
  args.num_sequences = static_cast<int32_t>(p.num_sequences);
  args.num_q_rows = static_cast<int32_t>(p.num_q_rows);
  args.num_heads = static_cast<int32_t>(p.num_heads);
  args.num_kv_heads = static_cast<int32_t>(p.num_kv_heads);
  args.head_dim = static_cast<int32_t>(p.head_dim);
  args.block_size = static_cast<int32_t>(p.cache.block_size);
  const int64_t group = p.num_heads / p.num_kv_heads;
  args.group = static_cast<int32_t>(group);
  args.max_context =
      static_cast<int32_t>(std::min(p.max_blocks_per_sequence * p.cache.block_size, kMaxInt32));
  args.scale = p.scale;
  if (!UsesTensorCores(p)) return args;

  const int64_t decode_row_tiles = CeilDiv(group, internal::kDecodeTileRows);
  args.decode_row_tiles = static_cast<int32_t>(decode_row_tiles);
  // Split-K: enough CTAs to fill the GPU several times over, splits of at least
  // kDecodeMinSplitPositions positions of the longest context.
  const int64_t base_ctas =
      std::max<int64_t>(1, p.num_sequences * p.num_kv_heads * decode_row_tiles);
  int64_t splits = std::min(CeilDiv(p.max_context_length, internal::kDecodeMinSplitPositions),
                            CeilDiv(internal::kDecodeTargetCtas, base_ctas));
  if (p.decode_num_splits > 0) splits = p.decode_num_splits;
  args.num_splits =
      static_cast<int32_t>(std::clamp<int64_t>(splits, 1, internal::kDecodeMaxSplits));
  if (p.max_query_length * group > decode_row_tiles * internal::kDecodeTileRows) {
    args.prefill_row_tiles =
        static_cast<int32_t>(CeilDiv(p.max_query_length * group, internal::kPrefillTileRows));
  }
  return args;
}

// Decode CTAs x 16 rows x (head_dim floats of O + 1 log-sum-exp).
size_t WorkspaceBytes(const internal::PagedAttentionArgs& args, const PagedAttentionParams& p) {
  if (!UsesTensorCores(p) || args.num_splits <= 1) return 0;
  const int64_t ctas = static_cast<int64_t>(args.num_splits) * p.num_kv_heads *
                       args.decode_row_tiles * p.num_sequences;
  return static_cast<size_t>(ctas * internal::kDecodeTileRows * (p.head_dim + 1)) * sizeof(float);
}

absl::Status Validate(const PagedAttentionParams& p) {
  if (p.num_sequences < 0 || p.num_sequences > kMaxGridYZ) {
    return Invalid("num_sequences",
                   absl::StrCat("must be in [0, ", kMaxGridYZ, "], got ", p.num_sequences));
  }
  if (p.num_q_rows < 0 || p.num_q_rows > kMaxInt32) {
    return Invalid("num_q_rows", absl::StrCat("= ", p.num_q_rows));
  }
  if (p.num_heads <= 0 || p.num_heads > kMaxGridYZ) {
    return Invalid("num_heads", absl::StrCat("= ", p.num_heads));
  }
  if (p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0) {
    return Invalid("num_kv_heads",
                   absl::StrCat("must divide num_heads = ", p.num_heads, ", got ", p.num_kv_heads));
  }
  if (p.head_dim != 8 && p.head_dim != 32 && p.head_dim != 64 && p.head_dim != 128) {
    return Invalid("head_dim", absl::StrCat("must be 8, 32, 64 or 128, got ", p.head_dim));
  }
  const KvCacheLayer& cache = p.cache;
  if (auto status = ValidateKvCacheLayer(cache, p.num_kv_heads, p.head_dim, kName); !status.ok()) {
    return status;
  }
  if (p.max_context_length < 0 || p.max_context_length > kMaxInt32) {
    return Invalid("max_context_length", absl::StrCat("= ", p.max_context_length));
  }
  if (p.max_query_length < 0 || p.max_query_length > kMaxInt32) {
    return Invalid("max_query_length", absl::StrCat("= ", p.max_query_length));
  }
  if (p.max_blocks_per_sequence <= 0 ||
      p.max_blocks_per_sequence < CeilDiv(p.max_context_length, cache.block_size)) {
    return Invalid("max_blocks_per_sequence",
                   absl::StrCat("= ", p.max_blocks_per_sequence,
                                " cannot hold max_context_length = ", p.max_context_length,
                                " positions of block_size ", cache.block_size));
  }
  if (!(p.scale > 0.0f) || p.scale == std::numeric_limits<float>::infinity()) {
    return Invalid("scale", absl::StrCat("must be positive and finite, got ", p.scale));
  }
  if (p.decode_num_splits < 0 || p.decode_num_splits > internal::kDecodeMaxSplits) {
    return Invalid("decode_num_splits", absl::StrCat("must be in [0, ", internal::kDecodeMaxSplits,
                                                     "], got ", p.decode_num_splits));
  }
  for (auto [name, pointer] : {std::tuple<const char*, const void*>{"q", p.q},
                               {"out", p.out},
                               {"block_tables", p.block_tables},
                               {"query_starts", p.query_starts},
                               {"context_lengths", p.context_lengths}}) {
    if (pointer == nullptr) return Invalid(name, "is null");
  }
  if (UsesTensorCores(p)) {
    for (auto [name, pointer] : {std::tuple<const char*, const void*>{"q", p.q},
                                 {"out", p.out},
                                 {"cache.keys", cache.keys},
                                 {"cache.values", cache.values}}) {
      if (!Aligned16(pointer)) return Invalid(name, "must be 16-byte aligned");
    }
    const internal::PagedAttentionArgs args = Resolve(p);
    if (args.prefill_row_tiles > kMaxGridYZ) {
      return Invalid("max_query_length",
                     absl::StrCat("= ", p.max_query_length, " exceeds one launch"));
    }
    const size_t needed = WorkspaceBytes(args, p);
    if (needed > 0) {
      if (p.workspace == nullptr || p.workspace_bytes < needed) {
        return Invalid("workspace", absl::StrCat("must hold ", needed, " bytes, got ",
                                                 p.workspace == nullptr ? 0 : p.workspace_bytes));
      }
      if (!Aligned16(p.workspace)) return Invalid("workspace", "must be 16-byte aligned");
    }
  }
  return absl::OkStatus();
}

absl::Status ToStatus(const char* what, cudaError_t error) {
  if (error == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(kName, " ", what, " launch: ", cudaGetErrorString(error)));
}

}  // namespace

size_t PagedAttentionWorkspaceBytes(const PagedAttentionParams& params) {
  // Only the fields the size depends on need to be sane here (the workspace is checked later).
  if (params.num_sequences <= 0 || params.num_kv_heads <= 0 || params.num_heads <= 0 ||
      params.cache.block_size <= 0 || params.max_context_length < 0) {
    return 0;
  }
  return WorkspaceBytes(Resolve(params), params);
}

namespace internal {

PagedAttentionArgs ResolvePagedAttentionArgs(const PagedAttentionParams& params) {
  PagedAttentionArgs args = Resolve(params);
  if (WorkspaceBytes(args, params) > 0) {
    const int64_t ctas = static_cast<int64_t>(args.num_splits) * params.num_kv_heads *
                         args.decode_row_tiles * params.num_sequences;
    args.partial_out = static_cast<float*>(params.workspace);
    args.partial_lse = args.partial_out + ctas * kDecodeTileRows * params.head_dim;
  }
  return args;
}

}  // namespace internal

absl::Status PagedAttention(const PagedAttentionParams& params, cudaStream_t stream) {
  if (auto status = Validate(params); !status.ok()) return status;
  if (params.num_sequences == 0 || params.num_q_rows == 0) return absl::OkStatus();
  const internal::PagedAttentionArgs args = internal::ResolvePagedAttentionArgs(params);
  if (!UsesTensorCores(params)) {
    return ToStatus("reference", internal::LaunchPagedAttentionReference(args, stream));
  }
  if (auto status = ToStatus("decode", internal::LaunchPagedAttentionDecode(args, stream));
      !status.ok()) {
    return status;
  }
  return ToStatus("prefill", internal::LaunchPagedAttentionPrefill(args, stream));
}

}  // namespace flatfleet::cuda
