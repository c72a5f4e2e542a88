#include "quantize/eval/recipe_accuracy.h"

#include "common/status_macros.h"
#include "kernels/cpu/cpu_backend.h"
#include "quant/quantized_backend.h"

namespace flatfleet::quant {

TokenBatch CalibrationTokens(int64_t vocab) {
  // 1024 tokens: GPTQ's Hessian needs clearly more rows than the widest layer input (688);
  // with 128 it overfits the calibration subspace and loses to RTN (docs/ACCURACY.md).
  return RandomTokens(/*batch=*/16, /*length=*/64, vocab, /*seed=*/0x5EED);
}

absl::StatusOr<LogitAgreement> MeasureRecipe(const ModelUnderTest& model, const QuantRecipe& recipe,
                                             const TokenBatch& tokens,
                                             std::span<const float> reference_logits,
                                             const TokenBatch& calibration) {
  FF_ASSIGN_OR_RETURN(KeepFloatFilter keep_float, model.FloatLinears());
  FF_ASSIGN_OR_RETURN(auto backend, QuantizedCpuBackend::Create(recipe, std::move(keep_float)));
  FF_ASSIGN_OR_RETURN(auto quantized_model, model.Build(*backend));
  backend->set_mode(LinearMode::kCalibrate);
  FF_RETURN_IF_ERROR(AllPositionLogits(*quantized_model, calibration).status());
  backend->set_mode(LinearMode::kQuantized);
  FF_ASSIGN_OR_RETURN(std::vector<float> logits, AllPositionLogits(*quantized_model, tokens));
  return CompareLogits(reference_logits, logits, model.config.vocab_size);
}

absl::StatusOr<std::vector<float>> FloatLogits(const ModelUnderTest& model,
                                               const TokenBatch& tokens) {
  FF_ASSIGN_OR_RETURN(auto float_model, model.Build(kernels::cpu::DefaultCpuBackend()));
  return AllPositionLogits(*float_model, tokens);
}

}  // namespace flatfleet::quant
