#include "coordinator/server/choice_logprobs.h"

#include <cstdint>
#include <vector>

namespace flatfleet::coordinator {
namespace {

using Json = nlohmann::json;

std::vector<int> Bytes(const std::string& text) {
  std::vector<int> bytes;
  bytes.reserve(text.size());
  for (char c : text) bytes.push_back(static_cast<unsigned char>(c));
  return bytes;
}

Json ChatEntry(const v1::TokenLogprob& entry) {
  return {{"token", entry.token()}, {"logprob", entry.logprob()}, {"bytes", Bytes(entry.token())}};
}

}  // namespace

Json RenderChoiceLogprobs(const v1::Choice& choice, Endpoint endpoint) {
  if (endpoint == Endpoint::kChatCompletions) {
    Json content = Json::array();
    for (const v1::TokenLogprob& entry : choice.logprobs()) {
      Json item = ChatEntry(entry);
      item["top_logprobs"] = Json::array();
      for (const v1::TokenLogprob& top : entry.top_logprobs()) {
        item["top_logprobs"].push_back(ChatEntry(top));
      }
      content.push_back(std::move(item));
    }
    return {{"content", std::move(content)}, {"refusal", nullptr}};
  }
  Json tokens = Json::array();
  Json token_logprobs = Json::array();
  Json top_logprobs = Json::array();
  Json text_offset = Json::array();
  int64_t offset = 0;
  for (const v1::TokenLogprob& entry : choice.logprobs()) {
    tokens.push_back(entry.token());
    token_logprobs.push_back(entry.logprob());
    Json top = Json::object();
    for (const v1::TokenLogprob& alternative : entry.top_logprobs()) {
      if (!top.contains(alternative.token())) top[alternative.token()] = alternative.logprob();
    }
    if (!top.contains(entry.token())) top[entry.token()] = entry.logprob();
    top_logprobs.push_back(std::move(top));
    text_offset.push_back(offset);
    offset += static_cast<int64_t>(entry.token().size());
  }
  return {{"tokens", std::move(tokens)},
          {"token_logprobs", std::move(token_logprobs)},
          {"top_logprobs", std::move(top_logprobs)},
          {"text_offset", std::move(text_offset)}};
}

}  // namespace flatfleet::coordinator
