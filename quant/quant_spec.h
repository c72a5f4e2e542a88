// Per-method quantization settings, as stored in a model's quantization.json:
//
// {
//   "method": "integer_scale",  // flatten_quant | flat_quant | integer_scale | abq_llm | quik |
//                               // smooth_quant (a label; the fields below select the behaviour)
//   "weight": {"bits": 4, "group_size": 128, "symmetric": true, "clip_ratio": 1.0,
//              "balanced": false},   // balanced: ABQ-LLM's odd levels (QUANT_FORMATS.md)
//   "activation": {"bits": 8, "granularity": "per_token", "symmetric": true, "clip_ratio": 1.0},
//   "scale_kind": "integer",              // fp16 | integer (Integer Scale; needs weight groups)
//   "max_amplifier_bits": 16,             // integer scale only: upper limit for the amplifier
//   "transform": {"kind": "hadamard", "seed": 0},   // none | hadamard | kronecker
//   "outlier_channels": 0,                // QUIK: input channels kept in FP16
//   "weight_quantizer": "rtn",            // rtn | gptq (GPTQ error feedback; needs calibration)
//   "gptq": {"damp": 0.01, "block_size": 128, "act_order": false},
//   "smooth": {"enabled": false, "alpha": 0.5, "search_alpha": false},   // SmoothQuant
//   "flatten": {"enabled": false, "threshold": 4.0, "max_growth": 0.25}  // FlattenQuant
// }
// Every field is optional except "method" (defaults as in the structs); unknown fields are errors.
// group_size 0 means one scale per output channel. Errors name the offending field.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace flatfleet::quant {

enum class QuantMethod { kFlattenQuant, kFlatQuant, kIntegerScale, kAbqLlm, kQuik, kSmoothQuant };
enum class ScaleKind { kFloat16, kInteger };
enum class ActivationGranularity { kPerToken, kPerTensor };
enum class TransformKind { kNone, kHadamard, kKronecker };
enum class WeightQuantizer { kRtn, kGptq };

struct WeightQuantSpec {
  int bits = 4;
  int64_t group_size = 128;
  bool symmetric = true;
  double clip_ratio = 1.0;
  bool balanced = false;  // symmetric only: levels (2 * code + 1) * scale, no zero level
  bool operator==(const WeightQuantSpec&) const = default;
};

struct ActivationQuantSpec {
  int bits = 8;
  ActivationGranularity granularity = ActivationGranularity::kPerToken;
  bool symmetric = true;
  double clip_ratio = 1.0;
  bool operator==(const ActivationQuantSpec&) const = default;
};

struct TransformSpec {
  TransformKind kind = TransformKind::kNone;
  uint64_t seed = 0;
  bool operator==(const TransformSpec&) const = default;
};

// GPTQ (arXiv 2210.17323): see quant/gptq_quantizer.h.
struct GptqSpec {
  double damp = 0.01;  // added to H's diagonal, relative to its mean
  int64_t block_size = 128;
  bool act_order = false;  // quantize columns in order of decreasing H_ii
  bool operator==(const GptqSpec&) const = default;
};

// SmoothQuant (arXiv 2211.10438): per input channel s_j = max|X_j|^alpha / max|W_j|^(1-alpha),
// x -> x / s, W -> W s (quant/smooth_input_transform.h).
struct SmoothSpec {
  bool enabled = false;
  double alpha = 0.5;         // in [0, 1]
  bool search_alpha = false;  // per layer, the alpha of a small grid with the least output error
  bool operator==(const SmoothSpec&) const = default;
};

// FlattenQuant (arXiv 2402.17985): input channels with calibrated max|x| above
// threshold * (median channel max) are split into k copies carrying x / k
// (quant/flatten_input_transform.h); the added channels are at most max_growth * in_features.
struct FlattenSpec {
  bool enabled = false;
  double threshold = 4.0;
  double max_growth = 0.25;
  bool operator==(const FlattenSpec&) const = default;
};

struct QuantSpec {
  QuantMethod method = QuantMethod::kIntegerScale;
  WeightQuantSpec weight;
  ActivationQuantSpec activation;
  ScaleKind scale_kind = ScaleKind::kFloat16;
  int max_amplifier_bits = 16;
  TransformSpec transform;
  int64_t outlier_channels = 0;
  WeightQuantizer weight_quantizer = WeightQuantizer::kRtn;
  GptqSpec gptq;
  SmoothSpec smooth;
  FlattenSpec flatten;
  bool operator==(const QuantSpec&) const = default;
};

absl::StatusOr<QuantSpec> QuantSpecFromJson(const nlohmann::json& json);
absl::StatusOr<QuantSpec> ParseQuantSpec(std::string_view text);
nlohmann::json QuantSpecToJson(const QuantSpec& spec);

}  // namespace flatfleet::quant
