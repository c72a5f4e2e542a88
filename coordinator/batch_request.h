// One validated request of a batch job: a line of OpenAI batch input, parsed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flatfleet::coordinator {

enum class Endpoint { kCompletions, kChatCompletions };

// "/v1/completions" or "/v1/chat/completions".
std::string_view EndpointUrl(Endpoint endpoint);

struct ChatMessage {
  std::string role;
  std::string content;
};

// Unset optionals take the server's defaults.
struct SamplingOptions {
  uint32_t max_tokens = 0;  // 0: the server's default.
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<uint32_t> top_k;  // 0 disables top-k.
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  // coordinator/openai_sampling_fields.h: unset or default means off.
  std::optional<float> presence_penalty;
  std::optional<float> frequency_penalty;
  std::optional<float> repetition_penalty;
  uint32_t min_tokens = 0;
  bool ignore_eos = false;
  std::vector<uint32_t> stop_token_ids;
  uint32_t n = 1;
  // Set: log probabilities with this many alternatives per token.
  std::optional<uint32_t> logprobs;
};

struct BatchRequestLine {
  int64_t line_number = 0;  // 1-based, counting blank lines too.
  std::string custom_id;
  Endpoint endpoint = Endpoint::kCompletions;
  std::string prompt;                 // kCompletions
  std::vector<ChatMessage> messages;  // kChatCompletions
  SamplingOptions sampling;
  std::string body_json;  // The body as received (compact JSON), for the job store.
};

// Why one line of input was rejected.
struct LineError {
  int64_t line_number = 0;
  std::string field;  // JSON path, e.g. "body.max_tokens"; empty for the whole line.
  std::string message;
  // The line's custom_id when it gave a usable one (a valid string not used by an earlier
  // line), so that its error result can name it; otherwise unset (null in the output).
  std::optional<std::string> custom_id;
};

// "line 9: body.max_tokens: must be ..." (the field is left out when empty).
std::string DescribeLineError(const LineError& error);

}  // namespace flatfleet::coordinator
