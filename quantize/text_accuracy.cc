#include "quantize/text_accuracy.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "quantize/eval/recipe_accuracy.h"

namespace flatfleet::quant {

std::vector<float> ScoredRows(const std::vector<float>& all, const TokenBatch& windows,
                              int64_t vocab) {
  std::vector<float> rows;
  rows.reserve(windows.batch * (windows.length - 1) * vocab);
  for (int64_t b = 0; b < windows.batch; ++b) {
    const auto begin = all.begin() + b * windows.length * vocab;
    rows.insert(rows.end(), begin, begin + (windows.length - 1) * vocab);
  }
  return rows;
}

double MeanNll(const std::vector<float>& scored, const TokenBatch& windows, int64_t vocab) {
  double total = 0.0;
  int64_t row = 0;
  for (int64_t b = 0; b < windows.batch; ++b) {
    for (int64_t t = 0; t + 1 < windows.length; ++t, ++row) {
      const float* logits = scored.data() + row * vocab;
      double max = logits[0];
      for (int64_t v = 1; v < vocab; ++v) max = std::max(max, static_cast<double>(logits[v]));
      double sum = 0.0;
      for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(logits[v]) - max);
      const int32_t target = windows.ids[b * windows.length + t + 1];
      total += std::log(sum) + max - logits[target];
    }
  }
  return total / static_cast<double>(row);
}

absl::StatusOr<TextSplit> SplitCalibrationText(std::string_view text, double calibration_fraction) {
  if (!(calibration_fraction > 0.0 && calibration_fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("calibration fraction must be in (0, 1), got %g", calibration_fraction));
  }
  const size_t target =
      static_cast<size_t>(calibration_fraction * static_cast<double>(text.size()));
  const size_t newline = text.find('\n', target);
  if (target == 0 || newline == std::string_view::npos || newline + 1 >= text.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "a text of %d bytes cannot be split at %g into calibration and evaluation parts "
        "(the cut is the first line break after that fraction)",
        text.size(), calibration_fraction));
  }
  return TextSplit{text.substr(0, newline + 1), text.substr(newline + 1)};
}

absl::StatusOr<TextEvaluation> PrepareTextEvaluation(const ModelUnderTest& model,
                                                     const tokenizer::Tokenizer& tokenizer,
                                                     std::string_view text,
                                                     const TextAccuracyOptions& options) {
  if (options.window < 2 || options.window > model.config.max_position_embeddings ||
      options.positions < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "need 2 <= window <= max_position_embeddings (%d) and positions >= 1, got window %d, "
        "positions %d",
        model.config.max_position_embeddings, options.window, options.positions));
  }
  FF_ASSIGN_OR_RETURN(TextSplit split, SplitCalibrationText(text, options.calibration_fraction));
  TextEvaluation evaluation;
  evaluation.options = options;
  evaluation.calibration_bytes = static_cast<int64_t>(split.calibration.size());
  evaluation.evaluation_bytes = static_cast<int64_t>(split.evaluation.size());
  FF_ASSIGN_OR_RETURN(evaluation.calibration,
                      CalibrationFromText(split.calibration, tokenizer, model.config.vocab_size,
                                          options.calibration_tokens, options.calibration_length));
  evaluation.calibration.info["split"] = absl::StrFormat(
      "first %d bytes (fraction %g, cut at a line break); evaluated on the other %d",
      evaluation.calibration_bytes, options.calibration_fraction, evaluation.evaluation_bytes);

  FF_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                      tokenizer.Encode(split.evaluation, /*add_special_tokens=*/false));
  const int64_t per_window = options.window - 1;
  const int64_t windows = (options.positions + per_window - 1) / per_window;
  if (static_cast<int64_t>(ids.size()) < windows * options.window) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "the evaluated part has %d tokens; %d windows of %d (for %d positions) need %d", ids.size(),
        windows, options.window, options.positions, windows * options.window));
  }
  for (int32_t id : ids) {
    if (id < 0 || id >= model.config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "token id %d is outside the model's vocabulary [0, %d)", id, model.config.vocab_size));
    }
  }
  ids.resize(windows * options.window);
  evaluation.windows = TokenBatch{windows, options.window, std::move(ids)};
  FF_ASSIGN_OR_RETURN(std::vector<float> logits, FloatLogits(model, evaluation.windows));
  evaluation.float_logits = ScoredRows(logits, evaluation.windows, model.config.vocab_size);
  evaluation.float_mean_nll =
      MeanNll(evaluation.float_logits, evaluation.windows, model.config.vocab_size);
  return evaluation;
}

absl::StatusOr<RecipeTextAccuracy> MeasureRecipeOnText(const ModelUnderTest& model,
                                                       const QuantRecipe& recipe,
                                                       const TextEvaluation& evaluation) {
  FF_ASSIGN_OR_RETURN(InMemoryQuantizedModel quantized,
                      QuantizeInMemory(model, recipe, evaluation.calibration));
  FF_ASSIGN_OR_RETURN(std::vector<float> logits,
                      AllPositionLogits(*quantized.model, evaluation.windows));
  const int64_t vocab = model.config.vocab_size;
  const std::vector<float> scored = ScoredRows(logits, evaluation.windows, vocab);
  RecipeTextAccuracy result;
  result.mean_nll = MeanNll(scored, evaluation.windows, vocab);
  result.perplexity = std::exp(result.mean_nll);
  FF_ASSIGN_OR_RETURN(result.agreement, CompareLogits(evaluation.float_logits, scored, vocab));
  FF_ASSIGN_OR_RETURN(result.weight_size,
                      QuantizedWeightSize(*quantized.model, *quantized.backend));
  return result;
}

}  // namespace flatfleet::quant
