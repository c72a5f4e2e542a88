// quantization.json of a quantized checkpoint directory (docs/QUANT_FORMATS.md, "Quantized
// checkpoint"): the recipe, where the model and calibration came from, and per linear layer the
// metadata needed to rebuild it from the stored tensors. This file is pure JSON (no tensors), so
// that it can be parsed, fuzzed and inspected alone; checkpoint/quantized_checkpoint.h reads the
// tensors it describes.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/quant/quantized_matrix.h"
#include "nlohmann/json.hpp"
#include "quant/quantized_linear.h"
#include "quant/recipes.h"

namespace flatfleet::quant {

inline constexpr std::string_view kQuantizedCheckpointFormat = "flatfleet-quantized";
inline constexpr int kQuantizedCheckpointFormatVersion = 1;
inline constexpr std::string_view kQuantizationJsonName = "quantization.json";

// How a layer is split over tensor-parallel ranks (worker/model/llama_weights.h).
enum class LayerParallelism { kReplicated, kColumn, kRow };

// One online input transform: its TransformState without the arrays' values, which are stored
// as tensors `<layer>.transforms.<index>.<array>`.
struct StoredTransform {
  std::string kind;
  nlohmann::json params = nlohmann::json::object();
  std::vector<std::string> arrays;  // names of TransformState::arrays
};

struct StoredLinearLayer {
  std::string name;  // the model's layer name, e.g. "model.layers.0.self_attn.qkv_proj"
  LayerParallelism parallel = LayerParallelism::kReplicated;
  // The checkpoint tensors stacked (along the output rows) into this layer, and their rows.
  std::vector<std::string> stacked;
  std::vector<int64_t> stacked_rows;
  int64_t out_features = 0;
  int64_t in_features = 0;
  int64_t transformed_features = 0;  // the integer GEMM's K
  LinearGemmKind gemm = LinearGemmKind::kFloatScales;
  QuantFormat weight_format;  // bits, symmetric, effective group size (0: per channel)
  // When the recipe's group size did not divide the layer's K: what it asked for and which
  // fallback gave weight_format.group_size (ChooseWeightGroupSize).
  GroupSizeFallback group_size_fallback = GroupSizeFallback::kNone;
  int64_t requested_group_size = 0;                 // set with a fallback
  QuantFormat activation_format;                    // per token; clip ratio
  std::optional<uint16_t> static_activation_scale;  // FP16 bits
  int amplifier_bits = 0;                           // integer scales only
  std::vector<int64_t> outlier_channels;            // QUIK only, ascending
  bool bias = false;
  // ABQ-style output correction: a per-output-channel shift added after the GEMM (like a bias).
  bool output_shift = false;
  std::vector<StoredTransform> transforms;
};

// Layer-by-layer quantization of a sparse-MoE model: per decoder layer, the calibration tokens
// the router sent to each expert (the rows its linears saw) and how its linears were quantized
// (quant/expert_calibration_fallback.h).
struct ExpertCalibration {
  int64_t expert = 0;
  int64_t tokens = 0;
  // Per projection ("w1", "w2", "w3"): ExpertQuantMethodName, "gptq", "gptq-damped",
  // "calibrated" or "rtn-clip-search".
  std::map<std::string, std::string> methods;
};
struct LayerExpertCalibration {
  int64_t layer = 0;
  std::vector<ExpertCalibration> experts;  // by expert index
};

struct QuantizedCheckpointManifest {
  int format_version = kQuantizedCheckpointFormatVersion;
  QuantRecipe recipe;
  std::string source_model;  // path the model was quantized from
  // Free-form description of the calibration data (source, tokens, sequences, length).
  nlohmann::json calibration = nlohmann::json::object();
  std::vector<std::string> tensor_files;  // safetensors files, relative to the directory
  std::vector<StoredLinearLayer> layers;  // quantized layers, in model load order
  std::vector<std::string> float_layers;  // linear layers kept in float (LM head, routers)
  // "expert_calibration", present when not empty (sparse-MoE models quantized layer by layer).
  std::vector<LayerExpertCalibration> expert_calibration;
};

// A recipe as JSON: {"name": ..., "spec": <QuantSpec JSON>, "weight_clip_search": bool,
// "min_expert_tokens": int (optional, default kAutoMinExpertTokens = -1)}
// (also the format of `flatfleet quantize --recipe FILE.json`). A bare QuantSpec object (one with
// "method") is accepted too and named `default_name`. Errors start with `source` (the file).
absl::StatusOr<QuantRecipe> RecipeFromJson(const nlohmann::json& json,
                                           std::string_view default_name = "custom",
                                           std::string_view source = kQuantizationJsonName);
nlohmann::json RecipeToJson(const QuantRecipe& recipe);

// Strict parse: unknown fields, wrong types, out-of-range values and duplicate layer names are
// errors naming the field (e.g. "quantization.json: layers[3].weight.bits: ...").
absl::StatusOr<QuantizedCheckpointManifest> ParseQuantizedCheckpointManifest(std::string_view text);
std::string SerializeQuantizedCheckpointManifest(const QuantizedCheckpointManifest& manifest);

std::string_view LayerParallelismName(LayerParallelism parallel);
std::string_view GemmKindName(LinearGemmKind kind);

// Names of a layer's stored tensors.
std::string StoredTensorName(std::string_view layer, std::string_view what);
std::string StoredTransformArrayName(std::string_view layer, size_t index, std::string_view array);

}  // namespace flatfleet::quant
