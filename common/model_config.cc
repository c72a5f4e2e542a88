#include "common/model_config.h"

#include <cmath>
#include <limits>
#include <optional>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/read_whole_file.h"
#include "common/status_macros.h"
#include "common/strict_json.h"

namespace flatfleet {
namespace {

using Json = nlohmann::json;

// Far above any real model, low enough that products of sizes cannot overflow int64.
constexpr int64_t kMaxSize = int64_t{1} << 31;

// Reads fields of one JSON object, treating JSON null like an absent field (as transformers does).
class FieldReader {
 public:
  FieldReader(const Json& object, std::string source, std::string prefix = "")
      : object_(object), source_(std::move(source)), prefix_(std::move(prefix)) {}

  absl::Status Error(const std::string& field, const std::string& problem) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": field '", prefix_, field, "' ", problem));
  }

  const Json* Find(const std::string& field) const {
    auto it = object_.find(field);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  // A positive integer no larger than kMaxSize; `fallback` when absent, an error when it has none.
  absl::StatusOr<int64_t> Size(const std::string& field, std::optional<int64_t> fallback) const {
    const Json* value = Find(field);
    if (value == nullptr) {
      if (fallback) return *fallback;
      return Error(field, "is missing");
    }
    if (!value->is_number_integer()) return Error(field, "must be an integer");
    if (value->is_number_unsigned()) {
      uint64_t unsigned_value = value->get<uint64_t>();
      if (unsigned_value == 0) return Error(field, "must be positive");
      if (unsigned_value > static_cast<uint64_t>(kMaxSize)) return Error(field, "is too large");
      return static_cast<int64_t>(unsigned_value);
    }
    return Error(field, "must be positive");
  }

  // A finite positive number.
  absl::StatusOr<double> Positive(const std::string& field, double fallback) const {
    const Json* value = Find(field);
    if (value == nullptr) return fallback;
    if (!value->is_number()) return Error(field, "must be a number");
    double number = value->get<double>();
    if (!std::isfinite(number) || number <= 0) return Error(field, "must be a positive number");
    return number;
  }

  absl::StatusOr<bool> Bool(const std::string& field, bool fallback) const {
    const Json* value = Find(field);
    if (value == nullptr) return fallback;
    if (!value->is_boolean()) return Error(field, "must be true or false");
    return value->get<bool>();
  }

  absl::StatusOr<std::optional<std::string>> String(const std::string& field) const {
    const Json* value = Find(field);
    if (value == nullptr) return std::nullopt;
    if (!value->is_string()) return Error(field, "must be a string");
    return value->get<std::string>();
  }

  absl::StatusOr<int64_t> TokenId(const Json& value, const std::string& field) const {
    if (!value.is_number_integer() || value.get<int64_t>() < 0) {
      return Error(field, "must hold non-negative integer token ids");
    }
    if (value.is_number_unsigned() &&
        value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Error(field, "holds a token id that is too large");
    }
    return value.get<int64_t>();
  }

 private:
  const Json& object_;
  std::string source_;
  std::string prefix_;
};

// Both spellings: transformers >= 5 `rope_parameters` (rope_theta inside), or the older
// `rope_scaling` next to a top-level `rope_theta`.
absl::Status ParseRope(const FieldReader& top, const std::string& source, double default_theta,
                       ModelConfig& config) {
  FF_ASSIGN_OR_RETURN(config.rope_theta, top.Positive("rope_theta", default_theta));
  std::string block_name;
  if (top.Find("rope_parameters") != nullptr) {
    block_name = "rope_parameters";
  } else if (top.Find("rope_scaling") != nullptr) {
    block_name = "rope_scaling";
  } else {
    return absl::OkStatus();
  }
  const Json& block = *top.Find(block_name);
  if (!block.is_object()) return top.Error(block_name, "must be a JSON object");
  FieldReader rope(block, source, block_name + ".");
  FF_ASSIGN_OR_RETURN(config.rope_theta, rope.Positive("rope_theta", config.rope_theta));

  FF_ASSIGN_OR_RETURN(std::optional<std::string> type, rope.String("rope_type"));
  const char* type_field = "rope_type";
  if (!type) {
    FF_ASSIGN_OR_RETURN(type, rope.String("type"));  // the pre-4.40 spelling
    type_field = "type";
  }
  RopeScaling& scaling = config.rope_scaling;
  scaling = RopeScaling();
  scaling.type = type.value_or("default");
  if (scaling.type == "default") return absl::OkStatus();
  if (scaling.type != "linear" && scaling.type != "llama3") {
    return rope.Error(type_field, absl::StrCat("has unsupported rope type '", scaling.type,
                                               "' (supported: default, linear, llama3)"));
  }
  if (rope.Find("factor") == nullptr) return rope.Error("factor", "is missing");
  FF_ASSIGN_OR_RETURN(scaling.factor, rope.Positive("factor", 1.0));
  if (scaling.type == "linear") return absl::OkStatus();

  for (const char* field : {"low_freq_factor", "high_freq_factor"}) {
    if (rope.Find(field) == nullptr) return rope.Error(field, "is missing");
  }
  FF_ASSIGN_OR_RETURN(scaling.low_freq_factor, rope.Positive("low_freq_factor", 1.0));
  FF_ASSIGN_OR_RETURN(scaling.high_freq_factor, rope.Positive("high_freq_factor", 4.0));
  // The smoothing divides by their difference.
  if (!(scaling.high_freq_factor > scaling.low_freq_factor)) {
    return rope.Error("high_freq_factor", "must be greater than low_freq_factor");
  }
  FF_ASSIGN_OR_RETURN(scaling.original_max_position_embeddings,
                      rope.Size("original_max_position_embeddings", std::nullopt));
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ParseConfigObject(const Json& root, const std::string& source) {
  if (!root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": config is not a JSON object"));
  }
  FieldReader top(root, source);
  ModelConfig config;
  FF_ASSIGN_OR_RETURN(std::optional<std::string> model_type, top.String("model_type"));
  if (!model_type) return top.Error("model_type", "is missing");
  // Mistral is Llama's architecture plus an optional sliding window (checked below).
  if (*model_type == "llama" || *model_type == "mistral") {
    config.model_type = "llama";
  } else if (*model_type == "mixtral") {
    config.model_type = "mixtral";
  } else {
    return top.Error("model_type", absl::StrCat("has unsupported value '", *model_type,
                                                "' (supported: llama, mistral, mixtral)"));
  }
  const bool is_mixtral = config.model_type == "mixtral";

  FF_ASSIGN_OR_RETURN(config.vocab_size, top.Size("vocab_size", std::nullopt));
  FF_ASSIGN_OR_RETURN(config.hidden_size, top.Size("hidden_size", std::nullopt));
  FF_ASSIGN_OR_RETURN(config.intermediate_size, top.Size("intermediate_size", std::nullopt));
  FF_ASSIGN_OR_RETURN(config.num_hidden_layers, top.Size("num_hidden_layers", std::nullopt));
  FF_ASSIGN_OR_RETURN(config.num_attention_heads, top.Size("num_attention_heads", std::nullopt));
  FF_ASSIGN_OR_RETURN(config.num_key_value_heads,
                      top.Size("num_key_value_heads", config.num_attention_heads));
  if (config.num_attention_heads % config.num_key_value_heads != 0) {
    return top.Error("num_key_value_heads", absl::StrCat("(", config.num_key_value_heads,
                                                         ") must divide num_attention_heads (",
                                                         config.num_attention_heads, ")"));
  }
  if (top.Find("head_dim") != nullptr) {
    FF_ASSIGN_OR_RETURN(config.head_dim, top.Size("head_dim", std::nullopt));
  } else {
    if (config.hidden_size % config.num_attention_heads != 0) {
      return top.Error(
          "hidden_size",
          absl::StrCat("(", config.hidden_size, ") is not divisible by num_attention_heads (",
                       config.num_attention_heads, ") and head_dim is not given"));
    }
    config.head_dim = config.hidden_size / config.num_attention_heads;
  }
  if (config.head_dim % 2 != 0) {
    return top.Error("head_dim",
                     absl::StrCat("(", config.head_dim, ") must be even for rotary embeddings"));
  }

  FF_ASSIGN_OR_RETURN(std::optional<std::string> activation, top.String("hidden_act"));
  if (activation && *activation != "silu") {
    return top.Error("hidden_act",
                     absl::StrCat("has unsupported value '", *activation, "' (supported: silu)"));
  }
  FF_ASSIGN_OR_RETURN(config.rms_norm_eps, top.Positive("rms_norm_eps", is_mixtral ? 1e-5 : 1e-6));
  FF_ASSIGN_OR_RETURN(config.max_position_embeddings,
                      top.Size("max_position_embeddings", is_mixtral ? 4096 * 32 : 2048));
  // transformers' defaults: 10000 for Llama and Mistral, 1e6 for Mixtral.
  FF_RETURN_IF_ERROR(ParseRope(top, source, is_mixtral ? 1e6 : 10000.0, config));
  if (top.Find("sliding_window") != nullptr) {
    FF_ASSIGN_OR_RETURN(int64_t window, top.Size("sliding_window", std::nullopt));
    if (window < config.max_position_embeddings) {
      return absl::UnimplementedError(
          absl::StrCat(source, ": field 'sliding_window' (", window,
                       ") below max_position_embeddings is not supported"));
    }
  }
  FF_ASSIGN_OR_RETURN(config.tie_word_embeddings, top.Bool("tie_word_embeddings", false));
  FF_ASSIGN_OR_RETURN(config.attention_bias, top.Bool("attention_bias", false));
  FF_ASSIGN_OR_RETURN(config.mlp_bias, top.Bool("mlp_bias", false));

  if (is_mixtral) {
    FF_ASSIGN_OR_RETURN(config.num_local_experts, top.Size("num_local_experts", 8));
    FF_ASSIGN_OR_RETURN(config.num_experts_per_tok, top.Size("num_experts_per_tok", 2));
    if (config.num_experts_per_tok > config.num_local_experts) {
      return top.Error("num_experts_per_tok", absl::StrCat("(", config.num_experts_per_tok,
                                                           ") exceeds num_local_experts (",
                                                           config.num_local_experts, ")"));
    }
  }

  if (const Json* bos = top.Find("bos_token_id")) {
    FF_ASSIGN_OR_RETURN(config.bos_token_id, top.TokenId(*bos, "bos_token_id"));
  }
  if (const Json* eos = top.Find("eos_token_id")) {
    if (eos->is_array()) {
      for (const Json& id : *eos) {
        FF_ASSIGN_OR_RETURN(int64_t token, top.TokenId(id, "eos_token_id"));
        config.eos_token_ids.push_back(token);
      }
    } else {
      FF_ASSIGN_OR_RETURN(int64_t token, top.TokenId(*eos, "eos_token_id"));
      config.eos_token_ids.push_back(token);
    }
  }
  return config;
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text,
                                             std::string_view source_name) {
  const std::string source(source_name);
  FF_ASSIGN_OR_RETURN(Json root, ParseStrictJson(json_text, source));
  try {
    return ParseConfigObject(root, source);
  } catch (const std::exception& e) {  // defensive: nlohmann accessors throw on type mismatch
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", e.what()));
  }
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::filesystem::path& dir_or_file) {
  std::error_code error;
  std::filesystem::path path = dir_or_file;
  if (std::filesystem::is_directory(path, error)) path /= "config.json";
  FF_ASSIGN_OR_RETURN(const std::string text, ReadWholeFile(path));
  return ParseModelConfig(text, path.string());
}

}  // namespace flatfleet
