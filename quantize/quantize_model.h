// The `flatfleet quantize` pipeline without the CLI: calibration data from text, a model built
// and calibrated on a QuantizedCpuBackend (the in-memory quantized model every accuracy tool
// uses), ready to run or to write with WriteQuantizedCheckpoint.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "quant/quantized_backend.h"
#include "quant/recipes.h"
#include "quantize/eval/model_under_test.h"
#include "worker/model/llama_model.h"

namespace flatfleet::quant {

// Token sequences the model is calibrated on, and a description for quantization.json.
struct CalibrationData {
  std::vector<std::vector<int32_t>> sequences;
  nlohmann::json info = nlohmann::json::object();
  int64_t tokens() const;
};

// The first `max_tokens` tokens of `text`, cut into sequences of at most `sequence_length`.
// Errors when the text has no tokens or ids beyond `vocab_size`.
absl::StatusOr<CalibrationData> CalibrationFromText(std::string_view text,
                                                    const tokenizer::Tokenizer& tokenizer,
                                                    int64_t vocab_size, int64_t max_tokens,
                                                    int64_t sequence_length);
// Seeded random ids (recipe_accuracy.h's CalibrationTokens), for when no text is given.
CalibrationData RandomCalibration(int64_t vocab_size);
// `tokens` seeded random ids in sequences of at most `sequence_length` (same seed).
CalibrationData RandomCalibration(int64_t vocab_size, int64_t tokens, int64_t sequence_length);

// A model on its own QuantizedCpuBackend; the backend outlives the model (declared first).
struct InMemoryQuantizedModel {
  std::unique_ptr<QuantizedCpuBackend> backend;
  std::unique_ptr<engine::LlamaModel> model;
};

// Builds `model` for `recipe` (LM head and routers kept float), records activation statistics
// over `calibration` (one forward per sequence; `on_sequence` is told after each) and leaves the
// backend in quantized mode.
absl::StatusOr<InMemoryQuantizedModel> QuantizeInMemory(
    const ModelUnderTest& model, const QuantRecipe& recipe, const CalibrationData& calibration,
    const std::function<void(int64_t done, int64_t total)>& on_sequence = nullptr);

}  // namespace flatfleet::quant
