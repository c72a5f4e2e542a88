// A model to measure quantization accuracy on, independent of the backend: its config and a way
// to build it for any backend (weights are re-prepared, i.e. re-quantized, per backend), plus
// the token batches and all-position logits the accuracy measurements use.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "kernels/backend.h"
#include "quant/float_linear_filter.h"
#include "worker/model/llama_model.h"
#include "worker/model/weight_source.h"

namespace flatfleet::quant {

struct ModelUnderTest {
  std::string name;
  ModelConfig config;
  std::shared_ptr<const engine::WeightSource> weights;
  engine::ModelOptions options;

  absl::StatusOr<std::unique_ptr<engine::LlamaModel>> Build(kernels::Backend& backend) const;
  // The linears that stay float under quantization, by name: the LM head (also when tied to
  // the embedding table) and the MoE routers (float_linear_filter.h).
  absl::StatusOr<KeepFloatFilter> FloatLinears() const;
};

// A checkpoint directory (config.json + safetensors). `bf16_rope` as in `flatfleet score`.
absl::StatusOr<ModelUnderTest> CheckpointModel(const std::filesystem::path& dir, bool bf16_rope);

// Token ids of `batch` sequences of `length` tokens each, row-major.
struct TokenBatch {
  int64_t batch = 0;
  int64_t length = 0;
  std::vector<int32_t> ids;
};

// Uniform random ids in [0, vocab) from a seed (calibration data and the stress model's prompts).
TokenBatch RandomTokens(int64_t batch, int64_t length, int64_t vocab, uint64_t seed);

// Logits of every position of every sequence, [batch * length, vocab], one batched Forward.
absl::StatusOr<std::vector<float>> AllPositionLogits(const engine::LlamaModel& model,
                                                     const TokenBatch& tokens);

// `input_ids` [B, T] and `logits` [B, T, V] of a reference file (e.g. the fixtures'
// reference.safetensors, made by Hugging Face in float32).
struct LogitReference {
  TokenBatch tokens;
  int64_t vocab = 0;
  std::vector<float> logits;
};
absl::StatusOr<LogitReference> ReadLogitReference(const std::filesystem::path& path);

}  // namespace flatfleet::quant
