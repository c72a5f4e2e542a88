// The bytes one tensor-parallel rank of a model holds on its device once the worker has loaded
// it, from the model directory's config.json, safetensors headers (dtype and shape, never the
// data) and quantization.json: what the coordinator's planner sizes groups by
// (docs/TENSOR_PARALLEL.md, "Planning"). It counts what the engine keeps, not what is on disk:
//
//   * float checkpoints: every linear in bf16 on the CUDA backend (kernels/cuda/backend/
//     cuda_backend.cc, PrepareNamedLinear uploads [out, in] as bf16 whatever the stored dtype;
//     biases bf16 and float32), the embedding table in bf16 and norms in float32 (PrepareWeight);
//     on the CPU backend everything in float32, linears packed in panels of 16 output rows
//     (kernels/cpu/gemm.h PackedMatrix);
//   * quantized checkpoints: the stored layers as the backend rebuilds them (CUDA: INT4 codes
//     repacked into interleaved words, K padded to 32, FP16 scales, int8 zero points, Integer
//     Scale multipliers, a float32 epilogue row; CPU: one int8 per code, as QuantizedMatrix
//     holds them), the float layers (LM head, routers) as above (CPU: twice, the
//     QuantizedCpuLinearWeight keeps its float32 weight beside the packed one);
//   * this rank's share (worker/model/tensor_parallel.h, llama_weights.cc): its query/KV-head
//     rows of qkv_proj and columns of o_proj, its intermediate rows/columns of the MLP and every
//     expert, its vocabulary rows of the embedding and LM head (a tied LM head is a second copy);
//     norms and routers whole; row-parallel biases on rank 0 only;
//   * a paged KV cache of `kv_cache_tokens` positions (rounded up to 16-position blocks; on the
//     CPU at least the worker's fixed pool of 1024 blocks) of this rank's KV heads, the activation
//     workspace LlamaModel::ReserveWorkspace takes for the continuous batcher's step (plus the
//     largest quantized layer's scratch, a quarter more and 16 MiB on CUDA:
//     CudaExecutionContext::ReserveWorkspace), and a fixed runtime overhead (CUDA context, cuBLAS
//     and NCCL buffers).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "common/safetensors_header.h"
#include "kernels/kv_pool.h"
#include "quant/quantized_checkpoint_manifest.h"

namespace flatfleet::quant {

// Which backend the worker runs the model on.
enum class EngineKind { kCuda, kCpu };
std::string_view EngineKindName(EngineKind kind);

// What the estimate reads of a model directory.
struct CheckpointShapes {
  std::filesystem::path dir;  // empty for a config-only model
  ModelConfig config;
  // Every tensor of the tensor files, headers only (TensorInfo::data is empty). Empty for a
  // config-only model, which then counts every tensor the model reads as present.
  std::map<std::string, TensorInfo, std::less<>> tensors;
  std::optional<QuantizedCheckpointManifest> manifest;  // a quantized checkpoint's
};

// config.json, quantization.json when present, and the headers of the tensor files: the
// manifest's tensor_files, else the shards of model.safetensors.index.json, else
// model.safetensors. Errors name the file and the field or tensor.
absl::StatusOr<CheckpointShapes> ReadCheckpointShapes(const std::filesystem::path& dir);
// A model with seeded weights and no files (the built-in demo model): every tensor present.
CheckpointShapes ConfigOnlyShapes(const ModelConfig& config);

// The CUDA context, cuBLAS(Lt) workspaces and NCCL buffers of a GPU worker, and the host
// process of a CPU worker, outside the engine's own allocations.
inline constexpr int64_t kCudaRuntimeOverheadBytes = int64_t{1} << 30;
inline constexpr int64_t kCpuRuntimeOverheadBytes = int64_t{256} << 20;

struct RankMemoryOptions {
  EngineKind engine = EngineKind::kCuda;
  int tp_size = 1;
  // The KV cache the rank must hold at least: positions over all running sequences (a CPU
  // worker's fixed pool of 16384 positions counts when larger).
  int64_t kv_cache_tokens = 8192;
  // nullopt: the engine's default (bf16 on CUDA, float32 on the CPU; `serve worker`).
  std::optional<kernels::KvDtype> kv_dtype;
  // The continuous batcher's workspace reservation (ContinuousBatcherOptions' defaults).
  int64_t max_step_tokens = 512;
  int64_t max_running_sequences = 64;
  // nullopt: kCudaRuntimeOverheadBytes or kCpuRuntimeOverheadBytes.
  std::optional<int64_t> runtime_overhead_bytes;
};

// One rank's bytes (the heaviest rank: uneven splits give rank 0 the longer ranges).
struct RankMemoryEstimate {
  EngineKind engine = EngineKind::kCuda;
  int tp_size = 1;
  int rank = 0;
  int64_t linear_bytes = 0;     // projections, MLP, experts, routers (quantized or float)
  int64_t embedding_bytes = 0;  // the embedding table's rows
  int64_t lm_head_bytes = 0;    // the LM head's rows (a copy of the embedding's when tied)
  int64_t norm_bytes = 0;       // RMSNorm scales and rotary frequencies
  int64_t kv_cache_bytes = 0;
  int64_t kv_cache_tokens = 0;  // rounded up to whole blocks
  int64_t workspace_bytes = 0;
  int64_t overhead_bytes = 0;
  // Elements of the checkpoint's float tensors this rank reads (what LoadLlamaWeights'
  // WeightLoadStats counts, / 4; quantized layers and a tied LM head not included): a check on
  // the sharding that does not depend on dtypes.
  int64_t weight_elements = 0;

  int64_t weight_bytes() const {
    return linear_bytes + embedding_bytes + lm_head_bytes + norm_bytes;
  }
  int64_t total_bytes() const {
    return weight_bytes() + kv_cache_bytes + workspace_bytes + overhead_bytes;
  }
  // "73.07 GB = 70.57 GB weights + 1.34 GB KV cache (8192 tokens) + 0.09 GB workspace + 1.07 GB
  // runtime (cuda, rank 0 of tp=2)".
  std::string Summary() const;
};

// Errors when `tp_size` cannot split the model (heads, KV heads; a quantized layer that cannot
// be cut: an online input transform on a row-parallel layer, weight groups spanning ranks) or
// when a tensor the engine reads is missing or of the wrong dtype or shape (naming the tensor
// and its file).
absl::StatusOr<RankMemoryEstimate> EstimateRankMemory(const CheckpointShapes& shapes,
                                                      const RankMemoryOptions& options);

}  // namespace flatfleet::quant
