// What the CLI runs: a float checkpoint (float32 CPU backend) or a quantized checkpoint
// (quantized_checkpoint.h), whichever a directory holds, and its tokenizer.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/tokenizer/tokenizer.h"
#include "worker/model/llama_model.h"
#include "worker/quantized/quantized_checkpoint.h"

namespace flatfleet::quant {

struct RunnableModel {
  std::optional<QuantizedCheckpointManifest> manifest;  // set for quantized checkpoints
  std::unique_ptr<QuantizedCpuBackend> backend;  // quantized on the CPU only; outlives `model`
  std::unique_ptr<engine::LlamaModel> model;

  bool quantized() const { return manifest.has_value(); }
  // "float32" or "quantized (recipe NAME)".
  std::string Description() const;
};

// Float checkpoints run on `float_backend` (the CPU reference when null); quantized ones on the
// integer CPU reference, or on `float_backend` when it is a device backend (its integer GEMMs;
// recipes they cannot run are refused naming the layer).
absl::StatusOr<RunnableModel> LoadRunnableModel(const std::filesystem::path& dir,
                                                engine::ModelOptions options = {},
                                                kernels::Backend* float_backend = nullptr);

// The tokenizer at `tokenizer_path` (default: the model directory's). When the default has none
// and the model's vocabulary holds the byte tokenizer's 259 ids, the byte tokenizer instead
// (test checkpoints ship without one); `note` then says so.
absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> LoadTokenizerOrBytes(
    const std::filesystem::path& model_dir, const std::string& tokenizer_path, int64_t vocab_size,
    std::string* note);

}  // namespace flatfleet::quant
