#include "coordinator/server/work_conversion.h"

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/batch_input_parser.h"
#include "coordinator/batch_output_line.h"
#include "coordinator/openai_sampling_fields.h"
#include "coordinator/server/choice_logprobs.h"
#include "nlohmann/json.hpp"

namespace flatfleet::coordinator {
namespace {

std::string_view FinishReasonName(v1::FinishReason reason) {
  return reason == v1::FINISH_REASON_LENGTH ? "length" : "stop";
}

v1::FinishReason ParseFinishReason(const nlohmann::json& value) {
  if (value.is_string() && value.get<std::string>() == "length") return v1::FINISH_REASON_LENGTH;
  if (value.is_string() && value.get<std::string>() == "stop") return v1::FINISH_REASON_STOP;
  return v1::FINISH_REASON_UNSPECIFIED;
}

uint32_t ReadUint(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return 0;
  auto it = object.find(key);
  return it != object.end() && it->is_number_unsigned() ? it->get<uint32_t>() : 0;
}

}  // namespace

absl::StatusOr<BatchRequestLine> ParseStoredBody(std::string_view body_json) {
  // The line's size was checked at upload, against the coordinator's own limit.
  BatchInputLimits limits;
  limits.max_line_bytes = std::numeric_limits<size_t>::max();
  BatchInputParser parser(limits);
  parser.AddLine(absl::StrCat("{\"custom_id\":\"stored\",\"body\":", std::string(body_json), "}"));
  ParsedBatch parsed = std::move(parser).Finish();
  if (!parsed.ok() || parsed.requests.size() != 1) {
    const std::string why = parsed.errors.empty() ? std::string("unknown")
                                                  : absl::StrCat(parsed.errors[0].field, ": ",
                                                                 parsed.errors[0].message);
    return absl::InvalidArgumentError(absl::StrCat("invalid request body: ", why));
  }
  return std::move(parsed.requests[0]);
}

v1::RequestBody ToRequestBodyProto(const BatchRequestLine& request) {
  v1::RequestBody body;
  if (request.endpoint == Endpoint::kCompletions) {
    body.set_prompt(request.prompt);
  } else {
    for (const ChatMessage& message : request.messages) {
      v1::ChatMessage* out = body.mutable_messages()->add_messages();
      out->set_role(message.role);
      out->set_content(message.content);
    }
  }
  const SamplingOptions& in = request.sampling;
  v1::SamplingParams* sampling = body.mutable_sampling();
  sampling->set_max_tokens(in.max_tokens);
  if (in.temperature) sampling->set_temperature(*in.temperature);
  if (in.top_p) sampling->set_top_p(*in.top_p);
  if (in.top_k) sampling->set_top_k(*in.top_k);
  if (in.seed) sampling->set_seed(*in.seed);
  for (const std::string& stop : in.stop) sampling->add_stop(stop);
  if (in.presence_penalty) sampling->set_presence_penalty(*in.presence_penalty);
  if (in.frequency_penalty) sampling->set_frequency_penalty(*in.frequency_penalty);
  if (in.repetition_penalty) sampling->set_repetition_penalty(*in.repetition_penalty);
  sampling->set_min_tokens(in.min_tokens);
  sampling->set_ignore_eos(in.ignore_eos);
  for (uint32_t id : in.stop_token_ids) sampling->add_stop_token_ids(id);
  if (in.n > 1) sampling->set_n(in.n);
  if (in.logprobs) sampling->set_logprobs(*in.logprobs);
  return body;
}

std::string RequestBodyToJson(const v1::RequestBody& body) {
  nlohmann::json json = nlohmann::json::object();
  if (body.has_messages()) {
    json["messages"] = nlohmann::json::array();
    for (const v1::ChatMessage& message : body.messages().messages()) {
      json["messages"].push_back({{"role", message.role()}, {"content", message.content()}});
    }
  } else {
    json["prompt"] = body.prompt();
  }
  const v1::SamplingParams& sampling = body.sampling();
  if (sampling.max_tokens() > 0) json["max_tokens"] = sampling.max_tokens();
  if (sampling.has_temperature()) json["temperature"] = sampling.temperature();
  if (sampling.has_top_p()) json["top_p"] = sampling.top_p();
  if (sampling.has_top_k()) json["top_k"] = sampling.top_k();
  if (sampling.has_seed()) json["seed"] = sampling.seed();
  if (sampling.stop_size() > 0) {
    json["stop"] = std::vector<std::string>(sampling.stop().begin(), sampling.stop().end());
  }
  SamplingOptions extra;
  if (sampling.has_presence_penalty()) extra.presence_penalty = sampling.presence_penalty();
  if (sampling.has_frequency_penalty()) extra.frequency_penalty = sampling.frequency_penalty();
  if (sampling.has_repetition_penalty()) extra.repetition_penalty = sampling.repetition_penalty();
  extra.min_tokens = sampling.min_tokens();
  extra.ignore_eos = sampling.ignore_eos();
  extra.stop_token_ids.assign(sampling.stop_token_ids().begin(), sampling.stop_token_ids().end());
  extra.n = sampling.n() > 0 ? sampling.n() : 1;
  if (sampling.has_logprobs()) extra.logprobs = sampling.logprobs();
  WriteSamplingFields(
      extra, body.has_messages() ? Endpoint::kChatCompletions : Endpoint::kCompletions, json);
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

nlohmann::json CompletionBody(std::string_view id, std::string_view model, Endpoint endpoint,
                              int64_t created_s, const v1::Response& response) {
  const bool chat = endpoint == Endpoint::kChatCompletions;
  auto render = [&](const v1::Choice& from, bool with_logprobs) {
    nlohmann::json choice = {
        {"index", from.index()},
        {"finish_reason", std::string(FinishReasonName(from.finish_reason()))},
        {"token_ids", std::vector<uint32_t>(from.token_ids().begin(), from.token_ids().end())}};
    if (chat) {
      choice["message"] = {{"role", "assistant"}, {"content", from.text()}};
    } else {
      choice["text"] = from.text();
    }
    if (with_logprobs) choice["logprobs"] = RenderChoiceLogprobs(from, endpoint);
    return choice;
  };
  nlohmann::json choices = nlohmann::json::array();
  if (response.choices_size() > 0) {
    // Several choices, or logprobs asked for (the worker fills `choices` exactly then).
    bool with_logprobs = false;
    for (const v1::Choice& choice : response.choices()) {
      with_logprobs = with_logprobs || choice.logprobs_size() > 0;
    }
    for (const v1::Choice& choice : response.choices()) {
      choices.push_back(render(choice, with_logprobs));
    }
  } else {
    v1::Choice only;
    only.set_text(response.text());
    *only.mutable_token_ids() = response.token_ids();
    only.set_finish_reason(response.finish_reason());
    choices.push_back(render(only, false));
  }
  nlohmann::json body = {{"object", chat ? "chat.completion" : "text_completion"},
                         {"created", created_s},
                         {"model", std::string(model)},
                         {"choices", std::move(choices)},
                         {"usage",
                          {{"prompt_tokens", response.usage().prompt_tokens()},
                           {"completion_tokens", response.usage().completion_tokens()},
                           {"total_tokens", response.usage().total_tokens()}}}};
  if (!id.empty()) body["id"] = std::string(id);
  return body;
}

ResultRecord FormatWorkResult(std::string_view custom_id, std::string_view model, Endpoint endpoint,
                              const v1::WorkResult& result) {
  if (result.has_error()) {
    return ResultRecord{ResultOutcome::kFailed, FormatErrorLine(custom_id, result.error().code(),
                                                                result.error().message())};
  }
  if (!result.has_response()) {
    return ResultRecord{ResultOutcome::kFailed,
                        FormatErrorLine(custom_id, "worker_error", "the worker sent no outcome")};
  }
  const int64_t created_s = absl::ToUnixSeconds(absl::Now());
  const nlohmann::json body = CompletionBody("", model, endpoint, created_s, result.response());
  return ResultRecord{ResultOutcome::kSucceeded, FormatResponseLine(custom_id, body)};
}

absl::StatusOr<v1::BatchResult> ToBatchResultProto(const StoredResult& stored) {
  v1::BatchResult result;
  result.set_sequence(static_cast<uint64_t>(stored.sequence));
  result.set_custom_id(stored.custom_id);
  nlohmann::json line =
      nlohmann::json::parse(stored.output_line, nullptr, /*allow_exceptions=*/false);
  if (line.is_discarded() || !line.is_object()) {
    return absl::DataLossError(absl::StrCat("stored result ", stored.sequence, " is not JSON"));
  }
  const nlohmann::json& error = line.contains("error") ? line["error"] : nlohmann::json();
  if (error.is_object()) {
    result.mutable_error()->set_code(error.value("code", ""));
    result.mutable_error()->set_message(error.value("message", ""));
    return result;
  }
  const nlohmann::json body = line.contains("response") && line["response"].is_object()
                                  ? line["response"].value("body", nlohmann::json::object())
                                  : nlohmann::json::object();
  v1::Response* response = result.mutable_response();
  result.set_endpoint(std::string(EndpointUrl(body.value("object", "") == "chat.completion"
                                                  ? Endpoint::kChatCompletions
                                                  : Endpoint::kCompletions)));
  if (body.contains("choices") && body["choices"].is_array() && !body["choices"].empty()) {
    const nlohmann::json& choice = body["choices"][0];
    if (choice.contains("text") && choice["text"].is_string()) {
      response->set_text(choice["text"].get<std::string>());
    } else if (choice.contains("message") && choice["message"].is_object()) {
      response->set_text(choice["message"].value("content", ""));
    }
    if (choice.contains("finish_reason")) {
      response->set_finish_reason(ParseFinishReason(choice["finish_reason"]));
    }
    if (choice.contains("token_ids") && choice["token_ids"].is_array()) {
      for (const nlohmann::json& id : choice["token_ids"]) {
        if (id.is_number_unsigned()) response->add_token_ids(id.get<uint32_t>());
      }
    }
  }
  const nlohmann::json usage = body.value("usage", nlohmann::json::object());
  response->mutable_usage()->set_prompt_tokens(ReadUint(usage, "prompt_tokens"));
  response->mutable_usage()->set_completion_tokens(ReadUint(usage, "completion_tokens"));
  response->mutable_usage()->set_total_tokens(ReadUint(usage, "total_tokens"));
  return result;
}

}  // namespace flatfleet::coordinator
