// Conversions between the job store's records and the gRPC messages: a stored request body
// becomes a worker's RequestBody; a worker's WorkResult becomes an OpenAI-Batch output line;
// a stored output line becomes a BatchResult for StreamResults.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "coordinator/batch_request.h"
#include "coordinator/job_types.h"
#include "flatfleet/v1/batch.pb.h"
#include "flatfleet/v1/worker.pb.h"
#include "nlohmann/json.hpp"

namespace flatfleet::coordinator {

// Re-validates a body as stored by CreateJob (so defaults such as max_tokens apply the same
// way as at upload) and converts it.
absl::StatusOr<BatchRequestLine> ParseStoredBody(std::string_view body_json);
v1::RequestBody ToRequestBodyProto(const BatchRequestLine& request);

// A RequestBody from a Generate call, as the JSON body a batch line would carry.
std::string RequestBodyToJson(const v1::RequestBody& body);

// The response body of a finished request: OpenAI's completion ("text_completion") or
// chat-completion ("chat.completion") object, with the token ids added to the choice. `id` is
// left out when empty (the stored line gets it when rendered, RenderOpenAiLine).
nlohmann::json CompletionBody(std::string_view id, std::string_view model, Endpoint endpoint,
                              int64_t created_s, const v1::Response& response);

// The output line for a worker's answer. The response body follows OpenAI's completion or
// chat-completion object (chosen by `endpoint`), with the token ids added to the choice.
ResultRecord FormatWorkResult(std::string_view custom_id, std::string_view model, Endpoint endpoint,
                              const v1::WorkResult& result);

// Reads a stored output line back (as written by FormatWorkResult or the store's own error
// lines) into the public message.
absl::StatusOr<v1::BatchResult> ToBatchResultProto(const StoredResult& stored);

}  // namespace flatfleet::coordinator
