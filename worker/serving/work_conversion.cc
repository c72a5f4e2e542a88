#include "worker/serving/work_conversion.h"

#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace flatfleet::engine {

absl::StatusOr<SamplingParams> ToSamplingParams(const v1::SamplingParams& sampling,
                                                const SamplingDefaults& defaults,
                                                uint64_t fallback_seed) {
  SamplingParams params;
  params.max_tokens = sampling.max_tokens() > 0 ? sampling.max_tokens() : defaults.max_tokens;
  params.temperature = sampling.has_temperature() ? sampling.temperature() : defaults.temperature;
  if (!(params.temperature >= 0.0f && params.temperature <= 2.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature ", params.temperature, " is outside [0, 2]"));
  }
  if (sampling.has_top_p()) {
    if (!(sampling.top_p() > 0.0f && sampling.top_p() <= 1.0f)) {
      return absl::InvalidArgumentError(
          absl::StrCat("top_p ", sampling.top_p(), " is outside (0, 1]"));
    }
    params.top_p = sampling.top_p();
  }
  if (sampling.has_top_k()) params.top_k = sampling.top_k();
  params.seed = sampling.has_seed() ? sampling.seed() : fallback_seed;
  params.stop_strings.assign(sampling.stop().begin(), sampling.stop().end());
  if (sampling.has_presence_penalty()) params.presence_penalty = sampling.presence_penalty();
  if (sampling.has_frequency_penalty()) params.frequency_penalty = sampling.frequency_penalty();
  if (sampling.has_repetition_penalty()) params.repetition_penalty = sampling.repetition_penalty();
  if (!(params.presence_penalty >= -2.0f && params.presence_penalty <= 2.0f) ||
      !(params.frequency_penalty >= -2.0f && params.frequency_penalty <= 2.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("presence_penalty ", params.presence_penalty, " and frequency_penalty ",
                     params.frequency_penalty, " must be in [-2, 2]"));
  }
  if (!(params.repetition_penalty > 0.0f && params.repetition_penalty <= 2.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("repetition_penalty ", params.repetition_penalty, " is outside (0, 2]"));
  }
  params.min_tokens = sampling.min_tokens();
  if (params.min_tokens > params.max_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_tokens ", params.min_tokens, " exceeds max_tokens ", params.max_tokens));
  }
  params.ignore_eos = sampling.ignore_eos();
  for (uint32_t id : sampling.stop_token_ids()) {
    if (id > static_cast<uint32_t>(std::numeric_limits<int32_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat("stop token id ", id, " is out of range"));
    }
    params.stop_token_ids.push_back(static_cast<int32_t>(id));
  }
  if (sampling.n() > static_cast<uint32_t>(kMaxChoices)) {
    return absl::InvalidArgumentError(absl::StrCat("n ", sampling.n(), " exceeds ", kMaxChoices));
  }
  params.n = sampling.n() == 0 ? 1 : static_cast<int32_t>(sampling.n());
  if (sampling.has_logprobs()) {
    if (sampling.logprobs() > static_cast<uint32_t>(kMaxTopLogprobs)) {
      return absl::InvalidArgumentError(
          absl::StrCat("logprobs ", sampling.logprobs(), " exceeds ", kMaxTopLogprobs));
    }
    params.logprobs = static_cast<int32_t>(sampling.logprobs());
  }
  return params;
}

absl::StatusOr<PromptInput> RenderPrompt(const v1::RequestBody& body, const ChatRendering& chat) {
  switch (body.input_case()) {
    case v1::RequestBody::kPrompt:
      return PromptInput{body.prompt(), /*add_special_tokens=*/true};
    case v1::RequestBody::kMessages: {
      if (chat.chat_template == nullptr) {
        return chat.unavailable.ok()
                   ? absl::FailedPreconditionError("the model has no chat template")
                   : chat.unavailable;
      }
      chat_template::ValueList messages;
      for (const v1::ChatMessage& message : body.messages().messages()) {
        chat_template::ValueDict entry;
        entry.Set("role", chat_template::Value::String(
                              message.role() == "developer" ? "system" : message.role()));
        entry.Set("content", chat_template::Value::String(message.content()));
        messages.push_back(chat_template::Value::Dict(std::move(entry)));
      }
      absl::StatusOr<std::string> text = chat.chat_template->Render(
          chat_template::Value::List(std::move(messages)), /*add_generation_prompt=*/true);
      if (!text.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("the chat template failed: ", text.status().message()));
      }
      return PromptInput{*std::move(text), /*add_special_tokens=*/false};
    }
    case v1::RequestBody::INPUT_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("request body has neither a prompt nor messages");
}

namespace {

v1::FinishReason ToFinishReason(FinishReason reason) {
  return reason == FinishReason::kStop ? v1::FINISH_REASON_STOP : v1::FINISH_REASON_LENGTH;
}

void FillLogprob(int32_t token, float logprob, const tokenizer::Tokenizer* tokenizer,
                 v1::TokenLogprob* out) {
  out->set_token_id(static_cast<uint32_t>(token));
  out->set_logprob(logprob);
  if (tokenizer != nullptr) {
    const int32_t ids[] = {token};
    out->set_token(tokenizer->Decode(ids, /*skip_special_tokens=*/false));
  }
}

v1::Choice ToChoice(const GenerationResult& result, uint32_t index,
                    const tokenizer::Tokenizer* tokenizer) {
  v1::Choice choice;
  choice.set_index(index);
  choice.set_text(result.text);
  for (int32_t id : result.tokens) choice.add_token_ids(static_cast<uint32_t>(id));
  choice.set_finish_reason(ToFinishReason(result.finish_reason));
  for (const SampledToken& sampled : result.logprobs) {
    v1::TokenLogprob* entry = choice.add_logprobs();
    FillLogprob(sampled.token, sampled.logprob, tokenizer, entry);
    for (const TokenLogprob& top : sampled.top) {
      FillLogprob(top.token, top.logprob, tokenizer, entry->add_top_logprobs());
    }
  }
  return choice;
}

}  // namespace

v1::Response ToResponse(const GenerationResult& result,
                        std::span<const GenerationResult> other_choices, bool with_logprobs,
                        const tokenizer::Tokenizer* tokenizer) {
  v1::Response response;
  response.set_text(result.text);
  for (int32_t id : result.tokens) response.add_token_ids(static_cast<uint32_t>(id));
  response.set_finish_reason(ToFinishReason(result.finish_reason));
  int64_t completion_tokens = result.completion_tokens;
  for (const GenerationResult& other : other_choices) completion_tokens += other.completion_tokens;
  v1::Usage* usage = response.mutable_usage();
  usage->set_prompt_tokens(static_cast<uint32_t>(result.prompt_tokens));
  usage->set_completion_tokens(static_cast<uint32_t>(completion_tokens));
  usage->set_total_tokens(static_cast<uint32_t>(result.prompt_tokens + completion_tokens));
  if (!other_choices.empty() || with_logprobs) {
    *response.add_choices() = ToChoice(result, 0, tokenizer);
    for (size_t i = 0; i < other_choices.size(); ++i) {
      *response.add_choices() = ToChoice(other_choices[i], static_cast<uint32_t>(i + 1), tokenizer);
    }
  }
  return response;
}

v1::Error ToError(const absl::Status& status) {
  v1::Error error;
  error.set_code(absl::AsciiStrToLower(absl::StatusCodeToString(status.code())));
  error.set_message(std::string(status.message()));
  return error;
}

}  // namespace flatfleet::engine
