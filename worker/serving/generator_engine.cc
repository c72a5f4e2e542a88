#include "worker/serving/generator_engine.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace flatfleet::engine {

GeneratorEngine::GeneratorEngine(const LlamaModel& model, const tokenizer::Tokenizer* tokenizer,
                                 GeneratorOptions options)
    : model_(model),
      generator_(model, tokenizer, options),
      max_sequence_length_(options.max_sequence_length > 0
                               ? options.max_sequence_length
                               : model.config().max_position_embeddings) {}

absl::Status GeneratorEngine::Submit(EngineRequest request) {
  // Generate() fails as a whole on one bad request, so every check it makes happens here.
  if (live_ids_.contains(request.id)) {
    return absl::AlreadyExistsError(absl::StrCat("request id '", request.id, "' is live"));
  }
  if (request.prompt.empty()) return absl::InvalidArgumentError("empty prompt");
  if (request.params.n != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "n = ", request.params.n, " needs the continuous batcher; this engine runs n = 1"));
  }
  if (request.params.max_tokens <= 0) {
    return absl::InvalidArgumentError("max_tokens must be positive");
  }
  const int64_t needed = static_cast<int64_t>(request.prompt.size()) + request.params.max_tokens;
  if (needed > max_sequence_length_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt of ", request.prompt.size(), " tokens plus max_tokens ", request.params.max_tokens,
        " exceeds the model's ", max_sequence_length_, " positions"));
  }
  const int64_t vocab = model_.config().vocab_size;
  for (int32_t id : request.prompt) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ", vocab, ")"));
    }
  }
  live_ids_.insert(request.id);
  waiting_.push_back({std::move(request), Clock::now(), false});
  return absl::OkStatus();
}

void GeneratorEngine::Cancel(const std::string& id) {
  for (Waiting& w : waiting_) {
    if (w.request.id == id) w.cancelled = true;
  }
}

std::vector<EngineResult> GeneratorEngine::Step() {
  std::vector<EngineResult> finished;
  std::vector<Waiting> batch;
  for (Waiting& w : waiting_) {
    if (w.cancelled) {
      EngineResult& result = finished.emplace_back();
      result.id = w.request.id;
      result.status = absl::CancelledError("cancelled before it ran");
      result.total_seconds = std::chrono::duration<double>(Clock::now() - w.submitted).count();
    } else {
      batch.push_back(std::move(w));
    }
  }
  waiting_.clear();
  for (const EngineResult& result : finished) live_ids_.erase(result.id);
  if (batch.empty()) return finished;

  std::vector<GenerationRequest> requests;
  requests.reserve(batch.size());
  for (const Waiting& w : batch) requests.push_back({w.request.prompt, w.request.params});
  const Clock::time_point start = Clock::now();
  GenerationStats generation_stats;
  absl::StatusOr<std::vector<GenerationResult>> generated =
      generator_.Generate(requests, &generation_stats);
  const Clock::time_point end = Clock::now();
  ++stats_.steps_total;  // one batch counts as one step of this engine

  for (size_t i = 0; i < batch.size(); ++i) {
    const Waiting& w = batch[i];
    EngineResult& result = finished.emplace_back();
    result.id = w.request.id;
    live_ids_.erase(result.id);
    result.total_seconds = std::chrono::duration<double>(end - w.submitted).count();
    if (!generated.ok()) {
      result.status = generated.status();
      continue;
    }
    result.result = std::move((*generated)[i]);
    // The batch samples every first token right after its prefill steps.
    result.time_to_first_token_seconds =
        std::chrono::duration<double>(start - w.submitted).count() +
        generation_stats.prefill_seconds;
    stats_.prompt_tokens_total += result.result.prompt_tokens;
    stats_.generated_tokens_total += result.result.completion_tokens;
  }
  return finished;
}

bool GeneratorEngine::Idle() const { return waiting_.empty(); }

EngineStats GeneratorEngine::Stats() const {
  EngineStats stats = stats_;
  stats.waiting_requests = static_cast<int64_t>(waiting_.size());
  return stats;
}

EngineFactory GeneratorEngineFactory(GeneratorOptions options) {
  return [options](const LlamaModel& model, const tokenizer::Tokenizer* tokenizer)
             -> absl::StatusOr<std::unique_ptr<InferenceEngine>> {
    return std::make_unique<GeneratorEngine>(model, tokenizer, options);
  };
}

}  // namespace flatfleet::engine
