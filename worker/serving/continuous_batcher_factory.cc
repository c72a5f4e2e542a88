#include "worker/serving/continuous_batcher_factory.h"

namespace flatfleet::engine {

EngineFactory ContinuousBatcherFactory(ContinuousBatcherOptions options) {
  return [options](const LlamaModel& model, const tokenizer::Tokenizer* tokenizer)
             -> absl::StatusOr<std::unique_ptr<InferenceEngine>> {
    absl::StatusOr<std::unique_ptr<ContinuousBatcher>> batcher =
        ContinuousBatcher::Create(model, tokenizer, options);
    if (!batcher.ok()) return batcher.status();
    return std::unique_ptr<InferenceEngine>(*std::move(batcher));
  };
}

}  // namespace flatfleet::engine
