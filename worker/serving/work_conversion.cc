#include "worker/serving/work_conversion.h"

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

v1::Response ToResponse(const GenerationResult& result) {
  v1::Response response;
  response.set_text(result.text);
  for (int32_t id : result.tokens) response.add_token_ids(static_cast<uint32_t>(id));
  response.set_finish_reason(result.finish_reason == FinishReason::kStop
                                 ? v1::FINISH_REASON_STOP
                                 : v1::FINISH_REASON_LENGTH);
  v1::Usage* usage = response.mutable_usage();
  usage->set_prompt_tokens(static_cast<uint32_t>(result.prompt_tokens));
  usage->set_completion_tokens(static_cast<uint32_t>(result.completion_tokens));
  usage->set_total_tokens(static_cast<uint32_t>(result.prompt_tokens + result.completion_tokens));
  return response;
}

v1::Error ToError(const absl::Status& status) {
  v1::Error error;
  error.set_code(absl::AsciiStrToLower(absl::StatusCodeToString(status.code())));
  error.set_message(std::string(status.message()));
  return error;
}

}  // namespace flatfleet::engine
