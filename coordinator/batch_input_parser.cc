#include "coordinator/batch_input_parser.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/strict_json.h"
#include "coordinator/openai_default_fields.h"
#include "coordinator/openai_sampling_fields.h"
#include "nlohmann/json.hpp"

namespace flatfleet::coordinator {
namespace {

using Json = nlohmann::json;

// The first problem found in a line.
struct Failure {
  std::string field;
  std::string message;
};
using MaybeFailure = std::optional<Failure>;

Failure Fail(std::string field, std::string message) {
  return Failure{std::move(field), std::move(message)};
}

const char* TypeName(const Json& value) {
  if (value.is_number_integer()) return "integer";
  if (value.is_number_float()) return "number";
  return value.type_name();
}

Failure WrongType(const std::string& field, const char* expected, const Json& value) {
  return Fail(field, absl::StrCat("must be ", expected, ", got ", TypeName(value)));
}

// Present and not null.
const Json* Find(const Json& object, std::string_view key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

MaybeFailure ReadNumberInRange(const Json& body, const char* key, double low, bool low_inclusive,
                               double high, std::optional<float>* out) {
  const Json* value = Find(body, key);
  if (value == nullptr) return std::nullopt;
  const std::string field = absl::StrCat("body.", key);
  if (!value->is_number()) return WrongType(field, "a number", *value);
  const double number = value->get<double>();
  const bool above_low = low_inclusive ? number >= low : number > low;
  if (!above_low || !(number <= high)) {
    return Fail(field, absl::StrCat("must be in ", low_inclusive ? "[" : "(", low, ", ", high,
                                    "], got ", number));
  }
  *out = static_cast<float>(number);
  return std::nullopt;
}

// Integers in [low, high]; floats such as 1.0 are rejected (strict types).
MaybeFailure ReadInteger(const Json& value, const std::string& field, int64_t low, uint64_t high,
                         uint64_t* out) {
  if (!value.is_number_integer()) return WrongType(field, "an integer", value);
  if (value.is_number_unsigned()) {
    const uint64_t number = value.get<uint64_t>();
    if (number > high || (low > 0 && number < static_cast<uint64_t>(low))) {
      return Fail(field, absl::StrCat("must be in [", low, ", ", high, "], got ", number));
    }
    *out = number;
    return std::nullopt;
  }
  const int64_t number = value.get<int64_t>();
  if (number < low || (number >= 0 && static_cast<uint64_t>(number) > high)) {
    return Fail(field, absl::StrCat("must be in [", low, ", ", high, "], got ", number));
  }
  *out = static_cast<uint64_t>(number);
  return std::nullopt;
}

MaybeFailure ReadStop(const Json& body, const BatchInputLimits& limits,
                      std::vector<std::string>* stop) {
  const Json* value = Find(body, "stop");
  if (value == nullptr) return std::nullopt;
  std::vector<const Json*> items;
  if (value->is_string()) {
    items.push_back(value);
  } else if (value->is_array()) {
    for (const Json& item : *value) items.push_back(&item);
  } else {
    return WrongType("body.stop", "a string or an array of strings", *value);
  }
  if (items.size() > limits.max_stop_sequences) {
    return Fail("body.stop", absl::StrCat("has ", items.size(), " sequences; at most ",
                                          limits.max_stop_sequences, " are allowed"));
  }
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string field = value->is_array() ? absl::StrCat("body.stop[", i, "]") : "body.stop";
    if (!items[i]->is_string()) return WrongType(field, "a string", *items[i]);
    const std::string& text = items[i]->get_ref<const std::string&>();
    if (text.empty()) return Fail(field, "must not be empty");
    if (text.size() > limits.max_stop_sequence_bytes) {
      return Fail(field, absl::StrCat("is ", text.size(), " bytes; at most ",
                                      limits.max_stop_sequence_bytes, " are allowed"));
    }
    stop->push_back(text);
  }
  return std::nullopt;
}

// Message content: a string, or an array of {"type": "text", "text": "..."} parts (joined).
MaybeFailure ReadContent(const Json& content, const std::string& field, std::string* out) {
  if (content.is_string()) {
    *out = content.get<std::string>();
    return std::nullopt;
  }
  if (!content.is_array()) return WrongType(field, "a string or an array of text parts", content);
  for (size_t i = 0; i < content.size(); ++i) {
    const std::string part_field = absl::StrCat(field, "[", i, "]");
    const Json& part = content[i];
    if (!part.is_object()) return WrongType(part_field, "an object", part);
    for (const auto& [key, unused] : part.items()) {
      if (key != "type" && key != "text") {
        return Fail(absl::StrCat(part_field, ".", key), "unknown field");
      }
    }
    const Json* type = Find(part, "type");
    if (type == nullptr || !type->is_string() || type->get_ref<const std::string&>() != "text") {
      return Fail(part_field + ".type", "only \"text\" content parts are supported");
    }
    const Json* text = Find(part, "text");
    if (text == nullptr) return Fail(part_field + ".text", "is required");
    if (!text->is_string()) return WrongType(part_field + ".text", "a string", *text);
    out->append(text->get_ref<const std::string&>());
  }
  return std::nullopt;
}

MaybeFailure ReadMessages(const Json& value, const BatchInputLimits& limits,
                          std::vector<ChatMessage>* messages) {
  if (!value.is_array()) return WrongType("body.messages", "an array", value);
  if (value.empty()) return Fail("body.messages", "must not be empty");
  if (value.size() > limits.max_messages) {
    return Fail("body.messages", absl::StrCat("has ", value.size(), " messages; at most ",
                                              limits.max_messages, " are allowed"));
  }
  for (size_t i = 0; i < value.size(); ++i) {
    const std::string field = absl::StrCat("body.messages[", i, "]");
    const Json& message = value[i];
    if (!message.is_object()) return WrongType(field, "an object", message);
    for (const auto& [key, unused] : message.items()) {
      if (key != "role" && key != "content" && key != "name") {
        return Fail(absl::StrCat(field, ".", key), "unknown field");
      }
    }
    ChatMessage parsed;
    const Json* role = Find(message, "role");
    if (role == nullptr) return Fail(field + ".role", "is required");
    if (!role->is_string()) return WrongType(field + ".role", "a string", *role);
    parsed.role = role->get<std::string>();
    if (parsed.role != "system" && parsed.role != "developer" && parsed.role != "user" &&
        parsed.role != "assistant") {
      return Fail(field + ".role", absl::StrCat("unsupported role \"", parsed.role,
                                                "\" (system, developer, user, assistant)"));
    }
    const Json* content = Find(message, "content");
    if (content == nullptr) return Fail(field + ".content", "is required");
    if (MaybeFailure failure = ReadContent(*content, field + ".content", &parsed.content)) {
      return failure;
    }
    const Json* name = Find(message, "name");
    if (name != nullptr && !name->is_string()) return WrongType(field + ".name", "a string", *name);
    messages->push_back(std::move(parsed));
  }
  return std::nullopt;
}

bool IsKnownBodyField(std::string_view key, Endpoint endpoint) {
  static constexpr std::string_view kCommon[] = {"max_tokens", "temperature", "top_p", "top_k",
                                                 "seed",       "stop",        "model", "user",
                                                 "stream"};
  for (std::string_view known : kCommon) {
    if (key == known) return true;
  }
  if (IsSamplingField(key, endpoint)) return true;
  if (endpoint == Endpoint::kCompletions) return key == "prompt";
  return key == "messages" || key == "max_completion_tokens";
}

MaybeFailure ReadBody(const Json& body, Endpoint endpoint, const BatchInputLimits& limits,
                      BatchRequestLine* request) {
  for (const auto& [key, value] : body.items()) {
    if (IsDefaultOnlyField(key, endpoint)) {
      if (std::optional<std::string> problem = CheckDefaultOnlyField(key, value, endpoint)) {
        return Fail(absl::StrCat("body.", key), *std::move(problem));
      }
      continue;
    }
    if (!IsKnownBodyField(key, endpoint)) {
      const Endpoint other =
          endpoint == Endpoint::kCompletions ? Endpoint::kChatCompletions : Endpoint::kCompletions;
      const bool other_endpoint = IsKnownBodyField(key, other) || IsDefaultOnlyField(key, other);
      return Fail(absl::StrCat("body.", key),
                  other_endpoint
                      ? absl::StrCat("not accepted by ", std::string(EndpointUrl(endpoint)))
                      : std::string("unknown field"));
    }
  }
  if (endpoint == Endpoint::kCompletions) {
    const Json* prompt = Find(body, "prompt");
    if (prompt == nullptr) return Fail("body.prompt", "is required");
    if (!prompt->is_string()) return WrongType("body.prompt", "a string", *prompt);
    request->prompt = prompt->get<std::string>();
    if (request->prompt.empty()) return Fail("body.prompt", "must not be empty");
  } else {
    const Json* messages = Find(body, "messages");
    if (messages == nullptr) return Fail("body.messages", "is required");
    if (MaybeFailure failure = ReadMessages(*messages, limits, &request->messages)) return failure;
  }

  SamplingOptions& sampling = request->sampling;
  const Json* max_tokens = Find(body, "max_tokens");
  const Json* max_completion_tokens = Find(body, "max_completion_tokens");
  if (max_tokens != nullptr && max_completion_tokens != nullptr) {
    return Fail("body.max_completion_tokens", "conflicts with body.max_tokens; give one");
  }
  if (max_completion_tokens != nullptr) max_tokens = max_completion_tokens;
  if (max_tokens != nullptr) {
    const std::string field =
        max_tokens == max_completion_tokens ? "body.max_completion_tokens" : "body.max_tokens";
    uint64_t value = 0;
    if (MaybeFailure failure = ReadInteger(*max_tokens, field, 1, limits.max_tokens_cap, &value)) {
      return failure;
    }
    sampling.max_tokens = static_cast<uint32_t>(value);
  } else {
    sampling.max_tokens = std::min(limits.default_max_tokens, limits.max_tokens_cap);
  }
  if (MaybeFailure failure =
          ReadNumberInRange(body, "temperature", 0, true, 2, &sampling.temperature)) {
    return failure;
  }
  if (MaybeFailure failure = ReadNumberInRange(body, "top_p", 0, false, 1, &sampling.top_p)) {
    return failure;
  }
  if (const Json* top_k = Find(body, "top_k")) {
    // -1 is the common spelling of "disabled" (vLLM); here that is 0.
    if (top_k->is_number_integer() && !top_k->is_number_unsigned() && top_k->get<int64_t>() == -1) {
      sampling.top_k = 0;
    } else {
      uint64_t value = 0;
      if (MaybeFailure failure = ReadInteger(*top_k, "body.top_k", 0, limits.max_top_k, &value)) {
        return failure;
      }
      sampling.top_k = static_cast<uint32_t>(value);
    }
  }
  if (const Json* seed = Find(body, "seed")) {
    uint64_t value = 0;
    if (MaybeFailure failure =
            ReadInteger(*seed, "body.seed", 0, std::numeric_limits<uint64_t>::max(), &value)) {
      return failure;
    }
    sampling.seed = value;
  }
  if (MaybeFailure failure = ReadStop(body, limits, &sampling.stop)) return failure;
  if (std::optional<SamplingFieldError> failure = ReadSamplingFields(body, endpoint, &sampling)) {
    return Fail(std::move(failure->field), std::move(failure->message));
  }

  if (const Json* model = Find(body, "model")) {
    if (!model->is_string()) return WrongType("body.model", "a string", *model);
    if (!limits.expected_model.empty() &&
        model->get_ref<const std::string&>() != limits.expected_model) {
      return Fail("body.model",
                  absl::StrCat("is \"", model->get<std::string>(), "\" but the batch runs \"",
                               limits.expected_model, "\""));
    }
  }
  if (const Json* user = Find(body, "user"); user != nullptr && !user->is_string()) {
    return WrongType("body.user", "a string", *user);
  }
  if (const Json* stream = Find(body, "stream")) {
    if (!stream->is_boolean() || stream->get<bool>()) {
      return Fail("body.stream", "streaming is not supported in batches; use false");
    }
  }
  return std::nullopt;
}

MaybeFailure ReadEndpoint(const Json& line, const Json& body, Endpoint* endpoint) {
  if (const Json* method = Find(line, "method")) {
    if (!method->is_string()) return WrongType("method", "a string", *method);
    if (method->get_ref<const std::string&>() != "POST") {
      return Fail("method", "must be \"POST\"");
    }
  }
  if (const Json* url = Find(line, "url")) {
    if (!url->is_string()) return WrongType("url", "a string", *url);
    const std::string& text = url->get_ref<const std::string&>();
    if (text == EndpointUrl(Endpoint::kCompletions)) {
      *endpoint = Endpoint::kCompletions;
    } else if (text == EndpointUrl(Endpoint::kChatCompletions)) {
      *endpoint = Endpoint::kChatCompletions;
    } else {
      return Fail("url", absl::StrCat("unsupported endpoint \"", text,
                                      "\" (/v1/completions, /v1/chat/completions)"));
    }
    return std::nullopt;
  }
  // No URL: the body decides.
  const bool has_prompt = body.contains("prompt");
  const bool has_messages = body.contains("messages");
  if (has_prompt && has_messages) {
    return Fail("body", "has both \"prompt\" and \"messages\"; give one, or give \"url\"");
  }
  if (!has_prompt && !has_messages) return Fail("body", "needs \"prompt\" or \"messages\"");
  *endpoint = has_messages ? Endpoint::kChatCompletions : Endpoint::kCompletions;
  return std::nullopt;
}

// Cuts `text` to at most 512 bytes plus "...", keeping UTF-8 sequences whole.
void BoundErrorText(std::string& text) {
  constexpr size_t kMaxBytes = 512;
  if (text.size() <= kMaxBytes) return;
  size_t cut = kMaxBytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  text.resize(cut);
  text += "...";
}

}  // namespace

BatchInputParser::BatchInputParser(BatchInputLimits limits) : limits_(std::move(limits)) {}

void BatchInputParser::AddError(int64_t line_number, std::string field, std::string message,
                                std::optional<std::string> custom_id) {
  // Errors are stored with the job (one per invalid line), and some quote the input (a
  // repeated key, an unknown field's name), so they are bounded.
  BoundErrorText(field);
  BoundErrorText(message);
  ++parsed_.error_count;
  LineError error{line_number, std::move(field), std::move(message), std::move(custom_id)};
  if (parsed_.errors.size() < limits_.max_reported_errors) parsed_.errors.push_back(error);
  parsed_.invalid_lines.push_back(std::move(error));
}

bool BatchInputParser::CountRequestLine(int64_t line_number) {
  if (++request_lines_ <= limits_.max_lines) return true;
  // Reported once, at the first line over the limit; later lines are not examined.
  if (request_lines_ == limits_.max_lines + 1) {
    parsed_.too_many_lines = true;
    ++parsed_.error_count;
    if (parsed_.errors.size() < limits_.max_reported_errors) {
      parsed_.errors.push_back(
          LineError{line_number, "",
                    absl::StrCat("the batch has more than ", limits_.max_lines, " request lines")});
    }
  }
  return false;
}

void BatchInputParser::AddOversizedLine(uint64_t bytes) {
  const int64_t line_number = ++parsed_.lines_read;
  if (!CountRequestLine(line_number)) return;
  if (bytes > limits_.max_line_bytes) {
    AddError(line_number, "",
             absl::StrCat("line is ", bytes, " bytes; at most ", limits_.max_line_bytes,
                          " are allowed"));
  } else {
    AddError(line_number, "",
             absl::StrCat("line is ", bytes, " bytes, too long for the client to upload"));
  }
}

void BatchInputParser::AddLine(std::string_view line) {
  const int64_t line_number = ++parsed_.lines_read;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (absl::StripAsciiWhitespace(absl::string_view(line.data(), line.size())).empty()) return;
  if (!CountRequestLine(line_number)) return;
  if (line.size() > limits_.max_line_bytes) {
    AddError(line_number, "",
             absl::StrCat("line is ", line.size(), " bytes; at most ", limits_.max_line_bytes,
                          " are allowed"));
    return;
  }
  absl::StatusOr<Json> parsed = ParseStrictJson(line, absl::StrCat("line ", line_number));
  if (!parsed.ok()) {
    AddError(line_number, "", std::string(parsed.status().message()));
    return;
  }
  const Json& json = *parsed;
  if (!json.is_object()) {
    AddError(line_number, "", absl::StrCat("must be a JSON object, got ", TypeName(json)));
    return;
  }

  BatchRequestLine request;
  request.line_number = line_number;
  std::optional<std::string> usable_custom_id;  // Set once the custom_id passed its checks.
  const auto fail = [&](const Failure& failure) {
    AddError(line_number, failure.field, failure.message, usable_custom_id);
  };
  for (const auto& [key, unused] : json.items()) {
    if (key != "custom_id" && key != "method" && key != "url" && key != "body") {
      return fail(Fail(key, "unknown field"));
    }
  }
  const Json* custom_id = Find(json, "custom_id");
  if (custom_id == nullptr) return fail(Fail("custom_id", "is required"));
  if (!custom_id->is_string()) return fail(WrongType("custom_id", "a string", *custom_id));
  request.custom_id = custom_id->get<std::string>();
  if (request.custom_id.empty()) return fail(Fail("custom_id", "must not be empty"));
  if (request.custom_id.size() > limits_.max_custom_id_bytes) {
    return fail(Fail("custom_id", absl::StrCat("is ", request.custom_id.size(), " bytes; at most ",
                                               limits_.max_custom_id_bytes, " are allowed")));
  }
  // Registered before the rest is checked, so a later repeat is reported even if this line
  // turns out to be bad for another reason.
  auto [first, inserted] = custom_id_lines_.try_emplace(request.custom_id, line_number);
  if (!inserted) {
    return fail(Fail(
        "custom_id",
        absl::StrCat("\"", request.custom_id, "\" repeats the custom_id of line ", first->second)));
  }
  usable_custom_id = request.custom_id;

  const Json* body = Find(json, "body");
  if (body == nullptr) return fail(Fail("body", "is required"));
  if (!body->is_object()) return fail(WrongType("body", "an object", *body));
  if (MaybeFailure failure = ReadEndpoint(json, *body, &request.endpoint)) return fail(*failure);
  if (MaybeFailure failure = ReadBody(*body, request.endpoint, limits_, &request)) {
    return fail(*failure);
  }
  request.body_json = body->dump(-1, ' ', false, Json::error_handler_t::replace);
  parsed_.requests.push_back(std::move(request));
}

void BatchInputParser::AddText(std::string_view text) {
  while (!text.empty()) {
    const size_t newline = text.find('\n');
    if (newline == std::string_view::npos) {
      AddLine(text);
      return;
    }
    AddLine(text.substr(0, newline));
    text.remove_prefix(newline + 1);
  }
}

ParsedBatch BatchInputParser::Finish() && { return std::move(parsed_); }

ParsedBatch ParseBatchInput(std::string_view text, const BatchInputLimits& limits) {
  BatchInputParser parser(limits);
  parser.AddText(text);
  return std::move(parser).Finish();
}

}  // namespace flatfleet::coordinator
