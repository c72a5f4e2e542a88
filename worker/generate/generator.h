// Batched generation: prompts (token ids) and sampling settings in, completions out. Each step
// runs one forward pass over every unfinished request: single-token decodes plus prompt chunks
// that fill the step's token budget (chunked prefill), as a continuous batcher does.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer/tokenizer.h"
#include "worker/model/llama_model.h"
#include "worker/sampling/sampler.h"
#include "worker/sampling/sampling_params.h"

namespace flatfleet::engine {

struct GenerationRequest {
  std::vector<int32_t> prompt;
  SamplingParams params;
};

enum class FinishReason { kStop, kLength };
// "stop" or "length", as in OpenAI's API.
std::string_view FinishReasonName(FinishReason reason);

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated ids, without a final stop id
  std::string text;             // decoded tokens, cut before a stop string
  FinishReason finish_reason = FinishReason::kLength;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;  // sampled tokens, a final stop id included
  // When params.logprobs >= 0: one entry per sampled token, a final stop id included.
  std::vector<SampledToken> logprobs;
};

struct GenerationStats {
  int64_t prefill_tokens = 0;  // prompt tokens run
  double prefill_seconds = 0;  // forward steps that contained prompt tokens
  int64_t decode_tokens = 0;   // tokens run in decode-only steps
  double decode_seconds = 0;
  int64_t steps = 0;
};

struct GeneratorOptions {
  // Most prompt tokens run in one step; longer prompts are prefilled in chunks.
  int64_t max_step_tokens = 2048;
  // Cap on prompt + completion length; 0 means the model's max_position_embeddings.
  int64_t max_sequence_length = 0;
};

class Generator {
 public:
  // `tokenizer` may be null (no text, no stop strings); it must outlive the generator.
  Generator(const LlamaModel& model, const tokenizer::Tokenizer* tokenizer,
            GeneratorOptions options = {});

  absl::StatusOr<std::vector<GenerationResult>> Generate(
      std::span<const GenerationRequest> requests, GenerationStats* stats = nullptr) const;

 private:
  const LlamaModel& model_;
  const tokenizer::Tokenizer* tokenizer_;
  GeneratorOptions options_;
};

}  // namespace flatfleet::engine
