// Per-method quantization settings, as stored in a model's quantization.json:
//
// {
//   "method": "integer_scale",            // flatten_quant | flat_quant | integer_scale | abq_llm |
//   quik "weight": {"bits": 4, "group_size": 128, "symmetric": true, "clip_ratio": 1.0,
//                   "balanced": false},   // balanced: ABQ-LLM's odd levels (QUANT_FORMATS.md)
//   "activation": {"bits": 8, "granularity": "per_token", "symmetric": true, "clip_ratio": 1.0},
//   "scale_kind": "integer",              // fp16 | integer (Integer Scale; needs weight groups)
//   "max_amplifier_bits": 16,             // integer scale only: upper limit for the amplifier
//   "transform": {"kind": "hadamard", "seed": 0},   // none | hadamard | kronecker
//   "outlier_channels": 0                 // QUIK: input channels kept in FP16
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

enum class QuantMethod { kFlattenQuant, kFlatQuant, kIntegerScale, kAbqLlm, kQuik };
enum class ScaleKind { kFloat16, kInteger };
enum class ActivationGranularity { kPerToken, kPerTensor };
enum class TransformKind { kNone, kHadamard, kKronecker };

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

struct QuantSpec {
  QuantMethod method = QuantMethod::kIntegerScale;
  WeightQuantSpec weight;
  ActivationQuantSpec activation;
  ScaleKind scale_kind = ScaleKind::kFloat16;
  int max_amplifier_bits = 16;
  TransformSpec transform;
  int64_t outlier_channels = 0;
  bool operator==(const QuantSpec&) const = default;
};

absl::StatusOr<QuantSpec> QuantSpecFromJson(const nlohmann::json& json);
absl::StatusOr<QuantSpec> ParseQuantSpec(std::string_view text);
nlohmann::json QuantSpecToJson(const QuantSpec& spec);

}  // namespace flatfleet::quant
