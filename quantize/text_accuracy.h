// Accuracy of quantization recipes on real text (docs/ACCURACY.md, "Real model"): the first part
// of a text calibrates, the rest is evaluated, never the same text for both. Per recipe:
// perplexity on the evaluated part, mean KL and top-1 agreement against the float32 model on the
// same positions, and the weight bits per parameter a checkpoint would store.
//
// Protocol: the text is cut at the first line break at or after `calibration_fraction` of its
// bytes. Calibration uses the first `calibration_tokens` tokens of the first part in sequences of
// `calibration_length` (as `flatfleet quantize --calib`). The evaluated part is tokenized alone
// and cut into consecutive windows of `window` tokens, as many as it takes to score at least
// `positions` tokens; in each window every token after the first is scored, predicted from the
// tokens before it in the window (`flatfleet eval-ppl` without overlap).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer/tokenizer.h"
#include "quant/logit_agreement.h"
#include "quant/recipes.h"
#include "quantize/eval/model_under_test.h"
#include "quantize/quantize_model.h"
#include "worker/quantized/quantized_checkpoint.h"

namespace flatfleet::quant {

struct TextAccuracyOptions {
  double calibration_fraction = 0.2;
  int64_t calibration_tokens = 2048;
  int64_t calibration_length = 128;
  int64_t window = 256;
  int64_t positions = 4096;
};

// Byte ranges of the two parts.
struct TextSplit {
  std::string_view calibration;
  std::string_view evaluation;
};
// Errors when either part would be empty or the fraction is outside (0, 1).
absl::StatusOr<TextSplit> SplitCalibrationText(std::string_view text, double calibration_fraction);

// Everything the recipes share: calibration sequences, evaluation windows and the float32 model's
// logits and mean negative log-likelihood on them.
struct TextEvaluation {
  TextAccuracyOptions options;
  int64_t calibration_bytes = 0;
  int64_t evaluation_bytes = 0;
  CalibrationData calibration;
  TokenBatch windows;               // [windows, window]
  std::vector<float> float_logits;  // [scored positions, vocab]
  double float_mean_nll = 0.0;
  int64_t positions() const { return windows.batch * (windows.length - 1); }
};

absl::StatusOr<TextEvaluation> PrepareTextEvaluation(const ModelUnderTest& model,
                                                     const tokenizer::Tokenizer& tokenizer,
                                                     std::string_view text,
                                                     const TextAccuracyOptions& options);

struct RecipeTextAccuracy {
  double mean_nll = 0.0;
  double perplexity = 0.0;
  LogitAgreement agreement;  // against the float32 model, on the scored positions
  StoredWeightSize weight_size;
};

// The logits of the positions that predict a token inside their window (every position but each
// window's last), [positions, vocab], out of AllPositionLogits of `windows`.
std::vector<float> ScoredRows(const std::vector<float>& all, const TokenBatch& windows,
                              int64_t vocab);
// Mean of -log softmax(row)[next token] over the scored positions, softmax in double.
double MeanNll(const std::vector<float>& scored, const TokenBatch& windows, int64_t vocab);

// Quantizes `model` with `recipe`, calibrated on evaluation.calibration, and measures it.
absl::StatusOr<RecipeTextAccuracy> MeasureRecipeOnText(const ModelUnderTest& model,
                                                       const QuantRecipe& recipe,
                                                       const TextEvaluation& evaluation);

}  // namespace flatfleet::quant
