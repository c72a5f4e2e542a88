// Conversions between worker.proto's work items and the engine's requests and results.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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

// The text to tokenize: the prompt, or a chat rendered as "role: content" lines followed by
// "assistant:" (the engine has no chat templates yet).
absl::StatusOr<std::string> PromptText(const v1::RequestBody& body);

v1::Response ToResponse(const GenerationResult& result);

// Error.code is the lower-case canonical code name, e.g. "cancelled", "invalid_argument".
v1::Error ToError(const absl::Status& status);

}  // namespace flatfleet::engine
