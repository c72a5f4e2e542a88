#include "coordinator/openai_default_fields.h"

#include "absl/strings/str_cat.h"

namespace flatfleet::coordinator {
namespace {

using Json = nlohmann::json;

enum class Accepts {
  kOne,           // a number equal to 1
  kFalse,         // false
  kTrueOrFalse,   // any boolean (no effect without the feature it tunes)
  kNullOnly,      // only null (any other value asks for something not done)
  kEmptyArray,    // [] (no tools, no functions)
  kEmptyObject,   // {} (no logit biases)
  kString,        // any string (identifiers with no effect on the output)
  kStringMap,     // an object of strings (metadata)
  kTextFormat,    // {"type": "text"}
  kTextModality,  // ["text"]
  kNone,          // the string "none" (no tool or function calls)
  kServiceTier,   // "auto" or "default"
};

struct FieldRule {
  std::string_view key;
  Accepts accepts;
  const char* what;  // what a non-default value would ask for
  bool chat = true;
  bool completions = true;
};

// OpenAI's fields (and vLLM's common extensions) with the value at which they do nothing.
constexpr FieldRule kRules[] = {
    {"logit_bias", Accepts::kEmptyObject, "logit biases are not supported"},
    {"best_of", Accepts::kOne, "best_of > 1 is not supported", false, true},
    {"echo", Accepts::kFalse, "echoing the prompt is not supported", false, true},
    {"suffix", Accepts::kNullOnly, "suffixes (insertion) are not supported", false, true},
    {"stream_options", Accepts::kNullOnly,
     "stream_options need streaming, which batches do not do"},
    {"tools", Accepts::kEmptyArray, "tools (function calling) are not supported", true, false},
    {"tool_choice", Accepts::kNone, "tool_choice needs tools, which are not supported", true,
     false},
    {"parallel_tool_calls", Accepts::kTrueOrFalse, "", true, false},
    {"functions", Accepts::kEmptyArray, "functions (function calling) are not supported", true,
     false},
    {"function_call", Accepts::kNone, "function_call needs functions, which are not supported",
     true, false},
    {"response_format", Accepts::kTextFormat, "only text responses are supported", true, false},
    {"modalities", Accepts::kTextModality, "only the text modality is supported", true, false},
    {"audio", Accepts::kNullOnly, "audio output is not supported", true, false},
    {"prediction", Accepts::kNullOnly, "predicted outputs are not supported", true, false},
    {"reasoning_effort", Accepts::kNullOnly, "reasoning effort is not supported", true, false},
    {"web_search_options", Accepts::kNullOnly, "web search is not supported", true, false},
    {"store", Accepts::kFalse, "stored completions are not supported", true, false},
    {"metadata", Accepts::kStringMap, "", true, false},
    {"service_tier", Accepts::kServiceTier, "only the default service tier exists here"},
    {"safety_identifier", Accepts::kString, ""},
    {"prompt_cache_key", Accepts::kString, ""},
};

const FieldRule* FindRule(std::string_view key, Endpoint endpoint) {
  for (const FieldRule& rule : kRules) {
    if (rule.key != key) continue;
    if (endpoint == Endpoint::kChatCompletions ? rule.chat : rule.completions) return &rule;
  }
  return nullptr;
}

bool IsNumberEqualTo(const Json& value, double number) {
  return value.is_number() && value.get<double>() == number;
}

}  // namespace

bool IsDefaultOnlyField(std::string_view key, Endpoint endpoint) {
  return FindRule(key, endpoint) != nullptr;
}

std::optional<std::string> CheckDefaultOnlyField(std::string_view key, const Json& value,
                                                 Endpoint endpoint) {
  const FieldRule* rule = FindRule(key, endpoint);
  if (rule == nullptr || value.is_null()) return std::nullopt;
  const char* accepted = "";
  bool ok = false;
  switch (rule->accepts) {
    case Accepts::kOne:
      ok = IsNumberEqualTo(value, 1);
      accepted = "1";
      break;
    case Accepts::kFalse:
      ok = value.is_boolean() && !value.get<bool>();
      accepted = "false";
      break;
    case Accepts::kTrueOrFalse:
      if (value.is_boolean()) return std::nullopt;
      return "must be a boolean";
    case Accepts::kNullOnly:
      accepted = "null";
      break;
    case Accepts::kEmptyArray:
      ok = value.is_array() && value.empty();
      accepted = "[]";
      break;
    case Accepts::kEmptyObject:
      ok = value.is_object() && value.empty();
      accepted = "{}";
      break;
    case Accepts::kString:
      if (value.is_string()) return std::nullopt;
      return "must be a string";
    case Accepts::kStringMap:
      if (value.is_object()) {
        for (const auto& [unused, item] : value.items()) {
          if (!item.is_string()) return "must be an object of strings";
        }
        return std::nullopt;
      }
      return "must be an object of strings";
    case Accepts::kTextFormat:
      ok = value.is_object() && value.size() == 1 && value.contains("type") &&
           value["type"] == "text";
      accepted = "{\"type\": \"text\"}";
      break;
    case Accepts::kTextModality:
      ok = value.is_array() && value.size() == 1 && value[0] == "text";
      accepted = "[\"text\"]";
      break;
    case Accepts::kNone:
      ok = value == "none";
      accepted = "\"none\"";
      break;
    case Accepts::kServiceTier:
      ok = value == "auto" || value == "default";
      accepted = "\"auto\" or \"default\"";
      break;
  }
  if (ok) return std::nullopt;
  return absl::StrCat(rule->what, "; only ", accepted, " (no effect) is accepted");
}

}  // namespace flatfleet::coordinator
