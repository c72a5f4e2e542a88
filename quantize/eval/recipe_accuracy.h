// Runs a model through a quantization recipe on the QuantizedCpuBackend and compares its
// all-position logits with reference logits (KL and top-1, logit_agreement.h).
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "quant/logit_agreement.h"
#include "quant/recipes.h"
#include "quantize/eval/model_under_test.h"

namespace flatfleet::quant {

// Calibration prompts: 16 x 64 random ids (seeded), never the evaluated prompts.
TokenBatch CalibrationTokens(int64_t vocab);

// Builds `model` on a QuantizedCpuBackend for `recipe` (LM head and MoE router in float),
// calibrates it with one float forward over `calibration` (QUIK outlier channels, static
// scales), then compares its logits on `tokens` with `reference_logits`.
absl::StatusOr<LogitAgreement> MeasureRecipe(const ModelUnderTest& model, const QuantRecipe& recipe,
                                             const TokenBatch& tokens,
                                             std::span<const float> reference_logits,
                                             const TokenBatch& calibration);

// The float32 CPU backend's logits of `model` on `tokens`.
absl::StatusOr<std::vector<float>> FloatLogits(const ModelUnderTest& model,
                                               const TokenBatch& tokens);

}  // namespace flatfleet::quant
