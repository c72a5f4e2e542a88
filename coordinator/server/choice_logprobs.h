// A choice's log probabilities in the shape of OpenAI's response bodies:
//   /v1/completions:      {"tokens": [...], "token_logprobs": [...],
//                          "top_logprobs": [{token: logprob, ...}, ...], "text_offset": [...]}
//     (each top_logprobs entry holds the N most likely tokens plus the sampled one, as OpenAI
//     documents "up to logprobs + 1 elements"; text_offset counts bytes from the start of the
//     completion's text)
//   /v1/chat/completions: {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token",
//                          "logprob", "bytes"}, ...]}, ...], "refusal": null}
// One entry per sampled token, a final stop token included (as usage.completion_tokens counts).
#pragma once

#include "coordinator/batch_request.h"
#include "flatfleet/v1/batch.pb.h"
#include "nlohmann/json.hpp"

namespace flatfleet::coordinator {

nlohmann::json RenderChoiceLogprobs(const v1::Choice& choice, Endpoint endpoint);

}  // namespace flatfleet::coordinator
