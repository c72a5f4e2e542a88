// Conversions between worker.proto's work items and the engine's requests and results.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/chat_template/chat_template.h"
#include "common/tokenizer/tokenizer.h"
#include "flatfleet/v1/batch.pb.h"
#include "worker/generate/generator.h"
#include "worker/sampling/sampling_params.h"

namespace flatfleet::engine {

// What unset sampling fields mean (OpenAI's defaults).
struct SamplingDefaults {
  int64_t max_tokens = 16;
  float temperature = 1.0f;
};

// Checks ranges (temperature [0, 2], top_p (0, 1]) and fills unset fields. An unset seed becomes
// `fallback_seed`, so a request's output is reproducible without making all requests alike.
absl::StatusOr<SamplingParams> ToSamplingParams(const v1::SamplingParams& sampling,
                                                const SamplingDefaults& defaults,
                                                uint64_t fallback_seed);

// How a worker renders chat requests: with the model's chat template, or not at all (then
// `unavailable` says why, e.g. the model has none).
struct ChatRendering {
  std::shared_ptr<const chat_template::ChatTemplate> chat_template;
  absl::Status unavailable;
};

struct PromptInput {
  std::string text;
  // A prompt gets the tokenizer's special tokens (BOS); a rendered chat already holds them,
  // as transformers' apply_chat_template(tokenize=True) assumes.
  bool add_special_tokens = true;
};

// The text to tokenize: the prompt, or the messages rendered with the chat template
// (add_generation_prompt on; a "developer" message is given to the template as "system").
// Errors: chat without a template (FailedPrecondition), a template that raises or fails
// (InvalidArgument, with the template's message).
absl::StatusOr<PromptInput> RenderPrompt(const v1::RequestBody& body, const ChatRendering& chat);

// Choice 0 in the top-level fields; every choice in `choices` when there are several or
// `with_logprobs` (their tokens' texts decoded by `tokenizer`, which may be null). Usage counts
// the prompt once and sums the choices' completion tokens.
v1::Response ToResponse(const GenerationResult& result,
                        std::span<const GenerationResult> other_choices = {},
                        bool with_logprobs = false,
                        const tokenizer::Tokenizer* tokenizer = nullptr);

// Error.code is the lower-case canonical code name, e.g. "cancelled", "invalid_argument".
v1::Error ToError(const absl::Status& status);

}  // namespace flatfleet::engine
