// How the worker builds its engine once a model is loaded. The service sees engines only
// through InferenceEngine, so the batching engine replaces the stand-in by swapping factories.
#pragma once

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "common/tokenizer/tokenizer.h"
#include "worker/model/llama_model.h"
#include "worker/serving/inference_engine.h"

namespace flatfleet::engine {

// `model` and `tokenizer` outlive the engine.
using EngineFactory = std::function<absl::StatusOr<std::unique_ptr<InferenceEngine>>(
    const LlamaModel& model, const tokenizer::Tokenizer* tokenizer)>;

}  // namespace flatfleet::engine
