#include "worker/generate/generator.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/sampling/sampler.h"
#include "worker/sampling/stop_conditions.h"

namespace flatfleet::engine {
namespace {

struct ActiveRequest {
  ActiveRequest(const GenerationRequest& request, GenerationResult& result, SequenceId sequence)
      : request(&request), result(&result), sequence(sequence) {}

  const GenerationRequest* request = nullptr;
  GenerationResult* result = nullptr;
  SequenceId sequence = 0;
  std::vector<int32_t> stop_ids;
  Sampler sampler{SamplingParams{}};
  int64_t prompt_done = 0;  // prompt tokens already in the cache
  int32_t next_input = -1;  // sampled token to feed next step
  bool finished = false;
  std::optional<IncrementalStopMatcher> stop_matcher;  // requests with stop strings
  bool stopped_by_string = false;
};

}  // namespace

std::string_view FinishReasonName(FinishReason reason) {
  return reason == FinishReason::kStop ? "stop" : "length";
}

Generator::Generator(const LlamaModel& model, const tokenizer::Tokenizer* tokenizer,
                     GeneratorOptions options)
    : model_(model), tokenizer_(tokenizer), options_(options) {}

absl::StatusOr<std::vector<GenerationResult>> Generator::Generate(
    std::span<const GenerationRequest> requests, GenerationStats* stats) const {
  const ModelConfig& config = model_.config();
  const int64_t max_length = options_.max_sequence_length > 0 ? options_.max_sequence_length
                                                              : config.max_position_embeddings;
  std::vector<int32_t> default_stop_ids(config.eos_token_ids.begin(), config.eos_token_ids.end());
  if (tokenizer_ != nullptr) {
    for (int32_t id : tokenizer_->eos_ids()) {
      if (std::find(default_stop_ids.begin(), default_stop_ids.end(), id) ==
          default_stop_ids.end()) {
        default_stop_ids.push_back(id);
      }
    }
  }

  std::vector<GenerationResult> results(requests.size());
  FF_RETURN_IF_ERROR(
      model_.ReserveWorkspace(options_.max_step_tokens + static_cast<int64_t>(requests.size()),
                              std::max<int64_t>(1, static_cast<int64_t>(requests.size()))));
  FF_ASSIGN_OR_RETURN(std::unique_ptr<KvCache> cache,
                      model_.CreateKvCache(
                          max_length, std::max<int64_t>(1, static_cast<int64_t>(requests.size()))));
  std::vector<ActiveRequest> active;
  active.reserve(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const GenerationRequest& request = requests[i];
    if (request.prompt.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat("request %d: empty prompt", i));
    }
    if (request.params.max_tokens <= 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("request %d: max_tokens must be positive", i));
    }
    if (static_cast<int64_t>(request.prompt.size()) >= max_length) {
      return absl::InvalidArgumentError(
          absl::StrFormat("request %d: prompt of %d tokens leaves no room within %d positions", i,
                          request.prompt.size(), max_length));
    }
    FF_ASSIGN_OR_RETURN(SequenceId sequence, cache->AddSequence());
    ActiveRequest& a = active.emplace_back(request, results[i], sequence);
    a.stop_ids = StopIds(request.params, default_stop_ids);
    a.sampler = Sampler(request.params, request.prompt, a.stop_ids);
    a.result->prompt_tokens = static_cast<int64_t>(request.prompt.size());
  }

  using Clock = std::chrono::steady_clock;
  while (true) {
    // Decodes first, then prompt chunks within the step's token budget.
    std::vector<SequenceChunk> chunks;
    std::vector<ActiveRequest*> owners;
    int64_t prompt_tokens = 0;
    for (ActiveRequest& a : active) {
      if (!a.finished && a.next_input >= 0) {
        chunks.push_back({a.sequence, std::span<const int32_t>(&a.next_input, 1), false});
        owners.push_back(&a);
      }
    }
    for (ActiveRequest& a : active) {
      const int64_t remaining = static_cast<int64_t>(a.request->prompt.size()) - a.prompt_done;
      if (a.finished || remaining == 0) continue;
      const int64_t budget = options_.max_step_tokens - prompt_tokens;
      if (budget <= 0) break;
      const int64_t take = std::min(remaining, budget);
      chunks.push_back({a.sequence,
                        std::span<const int32_t>(a.request->prompt).subspan(a.prompt_done, take),
                        false});
      owners.push_back(&a);
      prompt_tokens += take;
    }
    if (chunks.empty()) break;

    const auto start = Clock::now();
    FF_ASSIGN_OR_RETURN(Tensor logits, model_.Forward(chunks, *cache));
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (stats != nullptr) {
      ++stats->steps;
      if (prompt_tokens > 0) {
        stats->prefill_tokens += prompt_tokens;
        stats->prefill_seconds += seconds;
      } else {
        stats->decode_tokens += static_cast<int64_t>(chunks.size());
        stats->decode_seconds += seconds;
      }
    }

    for (size_t c = 0; c < chunks.size(); ++c) {
      ActiveRequest& a = *owners[c];
      if (a.next_input < 0) {
        a.prompt_done += static_cast<int64_t>(chunks[c].tokens.size());
        if (a.prompt_done < static_cast<int64_t>(a.request->prompt.size())) continue;
      }
      SampledToken sampled =
          a.sampler.Sample(std::span<const float>(logits.row(c), config.vocab_size));
      const int32_t token = sampled.token;
      GenerationResult& result = *a.result;
      if (a.request->params.logprobs >= 0) result.logprobs.push_back(std::move(sampled));
      ++result.completion_tokens;
      a.next_input = token;
      if (std::find(a.stop_ids.begin(), a.stop_ids.end(), token) != a.stop_ids.end()) {
        result.finish_reason = FinishReason::kStop;
        a.finished = true;
      } else {
        result.tokens.push_back(token);
        if (tokenizer_ != nullptr && !a.request->params.stop_strings.empty()) {
          if (!a.stop_matcher) a.stop_matcher.emplace(*tokenizer_, a.request->params.stop_strings);
          // Before min_tokens a stop string does not end the completion (vLLM's rule).
          if (auto at = a.stop_matcher->Append(token);
              at && result.completion_tokens >= a.request->params.min_tokens) {
            result.text = a.stop_matcher->text().substr(0, *at);
            result.finish_reason = FinishReason::kStop;
            a.finished = true;
            a.stopped_by_string = true;
          }
        }
      }
      if (!a.finished && (result.completion_tokens >= a.request->params.max_tokens ||
                          result.prompt_tokens + result.completion_tokens >= max_length)) {
        result.finish_reason = FinishReason::kLength;
        a.finished = true;
      }
      if (a.finished) {
        // The whole completion decoded once (a stop string already cut its text).
        if (tokenizer_ != nullptr && !a.stopped_by_string) {
          result.text = tokenizer_->Decode(result.tokens, /*skip_special_tokens=*/true);
        }
        cache->RemoveSequence(a.sequence);
      }
    }
  }
  return results;
}

}  // namespace flatfleet::engine
