#include "coordinator/openai_sampling_fields.h"

#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"

namespace flatfleet::coordinator {
namespace {

using Json = nlohmann::json;

const char* TypeName(const Json& value) {
  if (value.is_number_integer()) return "integer";
  if (value.is_number_float()) return "number";
  return value.type_name();
}

SamplingFieldError WrongType(std::string field, const char* expected, const Json& value) {
  return {std::move(field), absl::StrCat("must be ", expected, ", got ", TypeName(value))};
}

// Present and not null.
const Json* Find(const Json& object, std::string_view key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<SamplingFieldError> ReadNumber(const Json& body, const char* key, double low,
                                             bool low_inclusive, double high,
                                             std::optional<float>* out) {
  const Json* value = Find(body, key);
  if (value == nullptr) return std::nullopt;
  const std::string field = absl::StrCat("body.", key);
  if (!value->is_number()) return WrongType(field, "a number", *value);
  const double number = value->get<double>();
  const bool above_low = low_inclusive ? number >= low : number > low;
  if (!above_low || !(number <= high)) {
    return SamplingFieldError{field, absl::StrCat("must be in ", low_inclusive ? "[" : "(", low,
                                                  ", ", high, "], got ", number)};
  }
  *out = static_cast<float>(number);
  return std::nullopt;
}

// An integer in [low, high] (floats such as 1.0 are rejected, as elsewhere in the parser).
std::optional<SamplingFieldError> ReadInteger(const Json& value, const std::string& field,
                                              int64_t low, int64_t high, int64_t* out) {
  if (!value.is_number_integer()) return WrongType(field, "an integer", value);
  const bool too_big =
      value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(high);
  const int64_t number = too_big ? high : value.get<int64_t>();
  if (too_big || number < low || number > high) {
    return SamplingFieldError{
        field, absl::StrCat("must be in [", low, ", ", high, "], got ", value.dump())};
  }
  *out = number;
  return std::nullopt;
}

std::optional<SamplingFieldError> ReadLogprobs(const Json& body, Endpoint endpoint,
                                               SamplingOptions* sampling) {
  const Json* logprobs = Find(body, "logprobs");
  if (endpoint == Endpoint::kCompletions) {
    if (logprobs == nullptr) return std::nullopt;
    int64_t count = 0;
    if (auto failure = ReadInteger(*logprobs, "body.logprobs", 0, kMaxTopLogprobs, &count)) {
      return failure;
    }
    sampling->logprobs = static_cast<uint32_t>(count);
    return std::nullopt;
  }
  bool enabled = false;
  if (logprobs != nullptr) {
    if (!logprobs->is_boolean()) return WrongType("body.logprobs", "a boolean", *logprobs);
    enabled = logprobs->get<bool>();
  }
  int64_t top = 0;
  if (const Json* top_logprobs = Find(body, "top_logprobs")) {
    if (auto failure = ReadInteger(*top_logprobs, "body.top_logprobs", 0, kMaxTopLogprobs, &top)) {
      return failure;
    }
    // 0 without logprobs is the default a batch written for OpenAI often spells out.
    if (!enabled && top > 0) {
      return SamplingFieldError{"body.top_logprobs", "needs \"logprobs\": true"};
    }
  }
  if (enabled) sampling->logprobs = static_cast<uint32_t>(top);
  return std::nullopt;
}

}  // namespace

bool IsSamplingField(std::string_view key, Endpoint endpoint) {
  static constexpr std::string_view kBoth[] = {"presence_penalty",
                                               "frequency_penalty",
                                               "repetition_penalty",
                                               "min_tokens",
                                               "ignore_eos",
                                               "stop_token_ids",
                                               "n",
                                               "logprobs"};
  for (std::string_view known : kBoth) {
    if (key == known) return true;
  }
  return endpoint == Endpoint::kChatCompletions && key == "top_logprobs";
}

std::optional<SamplingFieldError> ReadSamplingFields(const Json& body, Endpoint endpoint,
                                                     SamplingOptions* sampling) {
  if (auto failure =
          ReadNumber(body, "presence_penalty", -2, true, 2, &sampling->presence_penalty)) {
    return failure;
  }
  if (auto failure =
          ReadNumber(body, "frequency_penalty", -2, true, 2, &sampling->frequency_penalty)) {
    return failure;
  }
  if (auto failure =
          ReadNumber(body, "repetition_penalty", 0, false, 2, &sampling->repetition_penalty)) {
    return failure;
  }
  if (const Json* min_tokens = Find(body, "min_tokens")) {
    int64_t value = 0;
    if (auto failure =
            ReadInteger(*min_tokens, "body.min_tokens", 0, sampling->max_tokens, &value)) {
      failure->message += " (at most max_tokens)";
      return failure;
    }
    sampling->min_tokens = static_cast<uint32_t>(value);
  }
  if (const Json* ignore_eos = Find(body, "ignore_eos")) {
    if (!ignore_eos->is_boolean()) return WrongType("body.ignore_eos", "a boolean", *ignore_eos);
    sampling->ignore_eos = ignore_eos->get<bool>();
  }
  if (const Json* ids = Find(body, "stop_token_ids")) {
    if (!ids->is_array()) return WrongType("body.stop_token_ids", "an array of integers", *ids);
    if (ids->size() > kMaxStopTokenIds) {
      return SamplingFieldError{
          "body.stop_token_ids",
          absl::StrCat("has ", ids->size(), " ids; at most ", kMaxStopTokenIds, " are allowed")};
    }
    for (size_t i = 0; i < ids->size(); ++i) {
      int64_t id = 0;
      if (auto failure = ReadInteger((*ids)[i], absl::StrCat("body.stop_token_ids[", i, "]"), 0,
                                     std::numeric_limits<int32_t>::max(), &id)) {
        return failure;
      }
      sampling->stop_token_ids.push_back(static_cast<uint32_t>(id));
    }
  }
  if (const Json* n = Find(body, "n")) {
    int64_t value = 0;
    if (auto failure = ReadInteger(*n, "body.n", 1, kMaxChoicesPerRequest, &value)) return failure;
    sampling->n = static_cast<uint32_t>(value);
  }
  return ReadLogprobs(body, endpoint, sampling);
}

void WriteSamplingFields(const SamplingOptions& sampling, Endpoint endpoint, Json& body) {
  if (sampling.presence_penalty) body["presence_penalty"] = *sampling.presence_penalty;
  if (sampling.frequency_penalty) body["frequency_penalty"] = *sampling.frequency_penalty;
  if (sampling.repetition_penalty) body["repetition_penalty"] = *sampling.repetition_penalty;
  if (sampling.min_tokens > 0) body["min_tokens"] = sampling.min_tokens;
  if (sampling.ignore_eos) body["ignore_eos"] = true;
  if (!sampling.stop_token_ids.empty()) body["stop_token_ids"] = sampling.stop_token_ids;
  if (sampling.n > 1) body["n"] = sampling.n;
  if (sampling.logprobs) {
    if (endpoint == Endpoint::kCompletions) {
      body["logprobs"] = *sampling.logprobs;
    } else {
      body["logprobs"] = true;
      body["top_logprobs"] = *sampling.logprobs;
    }
  }
}

}  // namespace flatfleet::coordinator
