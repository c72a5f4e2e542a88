#include "quantize/quantize_model.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "quantize/eval/recipe_accuracy.h"

namespace flatfleet::quant {

int64_t CalibrationData::tokens() const {
  int64_t total = 0;
  for (const auto& sequence : sequences) total += static_cast<int64_t>(sequence.size());
  return total;
}

absl::StatusOr<CalibrationData> CalibrationFromText(std::string_view text,
                                                    const tokenizer::Tokenizer& tokenizer,
                                                    int64_t vocab_size, int64_t max_tokens,
                                                    int64_t sequence_length) {
  if (max_tokens <= 0 || sequence_length <= 0) {
    return absl::InvalidArgumentError("calibration token count and length must be positive");
  }
  FF_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                      tokenizer.Encode(text, /*add_special_tokens=*/false));
  if (ids.empty()) return absl::InvalidArgumentError("the calibration text has no tokens");
  if (static_cast<int64_t>(ids.size()) > max_tokens) ids.resize(max_tokens);
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "calibration token id %d is outside the model's vocabulary [0, %d)", id, vocab_size));
    }
  }
  CalibrationData data;
  for (size_t begin = 0; begin < ids.size(); begin += sequence_length) {
    const size_t end = std::min(ids.size(), begin + static_cast<size_t>(sequence_length));
    data.sequences.emplace_back(ids.begin() + begin, ids.begin() + end);
  }
  data.info = {{"source", "text"},
               {"tokens", data.tokens()},
               {"sequences", data.sequences.size()},
               {"sequence_length", sequence_length}};
  return data;
}

CalibrationData RandomCalibration(int64_t vocab_size) {
  const TokenBatch batch = CalibrationTokens(vocab_size);
  CalibrationData data;
  for (int64_t b = 0; b < batch.batch; ++b) {
    data.sequences.emplace_back(batch.ids.begin() + b * batch.length,
                                batch.ids.begin() + (b + 1) * batch.length);
  }
  data.info = {{"source", "random"},
               {"seed", 0x5EED},
               {"tokens", data.tokens()},
               {"sequences", data.sequences.size()},
               {"sequence_length", batch.length}};
  return data;
}

CalibrationData RandomCalibration(int64_t vocab_size, int64_t tokens, int64_t sequence_length) {
  const TokenBatch batch = RandomTokens(1, tokens, vocab_size, /*seed=*/0x5EED);
  CalibrationData data;
  for (int64_t begin = 0; begin < tokens; begin += sequence_length) {
    const int64_t end = std::min(tokens, begin + sequence_length);
    data.sequences.emplace_back(batch.ids.begin() + begin, batch.ids.begin() + end);
  }
  data.info = {{"source", "random"},
               {"seed", 0x5EED},
               {"tokens", data.tokens()},
               {"sequences", data.sequences.size()},
               {"sequence_length", sequence_length}};
  return data;
}

absl::StatusOr<InMemoryQuantizedModel> QuantizeInMemory(
    const ModelUnderTest& model, const QuantRecipe& recipe, const CalibrationData& calibration,
    const std::function<void(int64_t done, int64_t total)>& on_sequence) {
  FF_ASSIGN_OR_RETURN(KeepFloatFilter keep_float, model.FloatLinears());
  InMemoryQuantizedModel quantized;
  FF_ASSIGN_OR_RETURN(quantized.backend,
                      QuantizedCpuBackend::Create(recipe, std::move(keep_float)));
  FF_ASSIGN_OR_RETURN(quantized.model, model.Build(*quantized.backend));
  quantized.backend->set_mode(LinearMode::kCalibrate);
  const int64_t total = static_cast<int64_t>(calibration.sequences.size());
  for (int64_t i = 0; i < total; ++i) {
    const std::vector<int32_t>& sequence = calibration.sequences[i];
    TokenBatch batch{1, static_cast<int64_t>(sequence.size()), sequence};
    FF_RETURN_IF_ERROR(AllPositionLogits(*quantized.model, batch).status());
    if (on_sequence) on_sequence(i + 1, total);
  }
  quantized.backend->set_mode(LinearMode::kQuantized);
  return quantized;
}

}  // namespace flatfleet::quant
