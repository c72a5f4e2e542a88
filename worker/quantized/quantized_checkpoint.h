// Quantized checkpoint directories (docs/QUANT_FORMATS.md, "Quantized checkpoint"):
//
//   config.json, tokenizer files      copied from the source model
//   quantization.json                 quantized_checkpoint_manifest.h
//   model.safetensors                 packed integer weights, scales, zero points, transform
//                                     arrays, and the float tensors (embeddings, norms, LM head,
//                                     routers) in the source's dtype
//
// Writing takes a model built and calibrated on a QuantizedCpuBackend and stores exactly the
// QuantizedLinear layers it runs. Loading rebuilds those layers from the stored tensors (no float
// weights, no re-quantization) through the model's ordinary loader: the weight source hands the
// model prepared layers (WeightSource::LoadPreparedLinear), sliced for a tensor-parallel rank
// (stored_layer_slicing.h). The loaded model's logits are bit-identical to the in-memory ones.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/safetensors.h"
#include "nlohmann/json.hpp"
#include "quant/quantized_backend.h"
#include "quant/quantized_checkpoint_manifest.h"
#include "worker/model/llama_model.h"
#include "worker/model/weight_source.h"

namespace flatfleet::quant {

// One layer done (index counts from 1).
struct QuantizeProgress {
  int64_t index = 0;
  int64_t total = 0;
  std::string layer;
  double elapsed_seconds = 0.0;
};
using QuantizeProgressFn = std::function<void(const QuantizeProgress&)>;

struct CheckpointWriteOptions {
  std::filesystem::path source_dir;  // config.json, tokenizer files and the float tensors
  std::filesystem::path out_dir;
  bool force = false;  // replace a non-empty out_dir
  nlohmann::json calibration_info = nlohmann::json::object();
  QuantizeProgressFn progress;  // optional
};

// Errors unless `out_dir` is absent, an empty directory, or `force` is set (checked before any
// work is done, and again when writing).
absl::Status CheckOutputDirectory(const std::filesystem::path& out_dir, bool force);

// Writes the layers of `model`, a single-rank model built from options.source_dir on `backend`
// (calibrated when the recipe needs it). The directory appears atomically: everything is
// written to a temporary sibling that is renamed into place, so a crash leaves no half
// checkpoint.
absl::Status WriteQuantizedCheckpoint(const engine::LlamaModel& model,
                                      const QuantizedCpuBackend& backend,
                                      const CheckpointWriteOptions& options);

// What a checkpoint of `model` stores for its quantized linear layers (every tensor
// WriteQuantizedCheckpoint writes for them: packed codes, scales, zero points, Integer Scale
// multipliers and base scales, QUIK's FP16 columns, biases, output shifts, transform arrays),
// against the float parameters they replace. Float layers (LM head, routers) are not counted.
struct StoredWeightSize {
  int64_t bytes = 0;
  int64_t parameters = 0;  // sum of out_features * in_features
  double bits_per_parameter() const {
    return parameters == 0 ? 0.0 : 8.0 * static_cast<double>(bytes) / parameters;
  }
};
absl::StatusOr<StoredWeightSize> QuantizedWeightSize(const engine::LlamaModel& model,
                                                     const QuantizedCpuBackend& backend);

// Building blocks of the writers (this file's and sequential_quantizer.h's).
// The manifest entry and tensors (packed codes, scales, ...) of one quantized layer, stored
// under request.name.
absl::Status AddQuantizedLayer(const engine::LinearLayerRequest& request,
                               const QuantizedLinear& layer, const QuantRecipe& recipe,
                               StoredLinearLayer& entry, std::vector<TensorToWrite>& tensors);
// A hidden sibling of `out_dir` named after it and `what`, unique per process and call.
std::filesystem::path SiblingPath(const std::filesystem::path& out_dir, std::string_view what);
// Renames the finished `temporary` directory to `out_dir`, replacing what is there.
absl::Status MoveIntoPlace(const std::filesystem::path& temporary,
                           const std::filesystem::path& out_dir);
// config.json and the tokenizer files of `source_dir` that exist, into `dir`.
absl::Status CopySideFiles(const std::filesystem::path& source_dir,
                           const std::filesystem::path& dir);
absl::Status WriteTextFile(const std::filesystem::path& path, const std::string& text);

// true when `dir` holds a quantization.json.
bool IsQuantizedCheckpoint(const std::filesystem::path& dir);

// The tensors of a quantized checkpoint as a weight source: float tensors load as usual, and
// every quantized layer comes prepared (a QuantizedCpuLinearWeight rebuilt from its stored
// tensors). Errors name the layer, the tensor and the file.
class QuantizedCheckpointSource final : public engine::WeightSource {
 public:
  static absl::StatusOr<std::unique_ptr<QuantizedCheckpointSource>> Open(
      const std::filesystem::path& dir);

  const QuantizedCheckpointManifest& manifest() const { return manifest_; }

  bool Has(std::string_view name) const override;
  absl::StatusOr<Tensor> Load(std::string_view name,
                              const std::vector<int64_t>& shape) const override;
  absl::StatusOr<Tensor> LoadSlice(std::string_view name, const std::vector<int64_t>& shape,
                                   const engine::TensorSlice& slice) const override;
  absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> LoadPreparedLinear(
      const engine::LinearLayerRequest& request, kernels::Backend& backend) const override;

  // The whole stored layer (all ranks' rows and columns).
  absl::StatusOr<QuantizedLinearParts> ReadLayerParts(const StoredLinearLayer& layer) const;

 private:
  QuantizedCheckpointSource() = default;
  absl::StatusOr<const TensorInfo*> ExpectTensor(const std::string& name, DType dtype,
                                                 const std::vector<int64_t>& shape) const;
  // The store holding `name` (error naming the tensor and the files when none does).
  absl::StatusOr<const TensorInfo*> Find(std::string_view name) const;

  std::filesystem::path dir_;
  QuantizedCheckpointManifest manifest_;
  std::vector<std::unique_ptr<WeightStore>> stores_;  // one per tensor file
};

// A quantized checkpoint loaded for running. On the CPU, `backend` runs the stored layers and
// keeps every other linear (LM head, routers) in float32; it must outlive the model (declared
// first). On a device backend the caller's backend runs everything and `backend` is null.
struct LoadedQuantizedModel {
  QuantizedCheckpointManifest manifest;
  std::unique_ptr<QuantizedCpuBackend> backend;
  std::unique_ptr<engine::LlamaModel> model;
};

// Loads `dir` (this rank's share when options.tensor_parallel is set) on the CPU integer
// reference, or on `device_backend` when given (stored_layer_on_device.h says which recipes run
// there; others fail naming the first layer that cannot).
absl::StatusOr<LoadedQuantizedModel> LoadQuantizedLlamaModel(
    const std::filesystem::path& dir, engine::ModelOptions options = {},
    kernels::Backend* device_backend = nullptr);

}  // namespace flatfleet::quant
