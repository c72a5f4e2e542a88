// An InferenceEngine on top of the batch-at-once Generator: each Step() runs every waiting
// request as one Generate call, so requests join only between batches. A stand-in until the
// continuous-batching engine (worker/batching/) is ready; it keeps the same contract.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

#include "common/tokenizer/tokenizer.h"
#include "worker/generate/generator.h"
#include "worker/model/llama_model.h"
#include "worker/serving/engine_factory.h"
#include "worker/serving/inference_engine.h"

namespace flatfleet::engine {

class GeneratorEngine : public InferenceEngine {
 public:
  // `model` and `tokenizer` (may be null: no text, no stop strings) must outlive the engine.
  GeneratorEngine(const LlamaModel& model, const tokenizer::Tokenizer* tokenizer,
                  GeneratorOptions options = {});

  absl::Status Submit(EngineRequest request) override;
  void Cancel(const std::string& id) override;
  std::vector<EngineResult> Step() override;
  bool Idle() const override;
  EngineStats Stats() const override;

  // Longest prompt + completion a request may ask for.
  int64_t max_sequence_length() const { return max_sequence_length_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Waiting {
    EngineRequest request;
    Clock::time_point submitted;
    bool cancelled = false;
  };

  const LlamaModel& model_;
  Generator generator_;
  int64_t max_sequence_length_;
  std::vector<Waiting> waiting_;
  std::unordered_set<std::string> live_ids_;
  EngineStats stats_;
};

// Builds a GeneratorEngine per loaded model.
EngineFactory GeneratorEngineFactory(GeneratorOptions options = {});

}  // namespace flatfleet::engine
