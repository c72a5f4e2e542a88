#include "quant/quantized_checkpoint_manifest.h"

#include <initializer_list>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "common/strict_json.h"
#include "quant/expert_calibration_fallback.h"

namespace flatfleet::quant {
namespace {

using Json = nlohmann::json;

constexpr int64_t kMaxFeatures = int64_t{1} << 31;

absl::Status FieldError(const std::string& path, std::string_view problem,
                        std::string_view source = kQuantizationJsonName) {
  return absl::InvalidArgumentError(absl::StrFormat("%s: %s: %s", source, path, problem));
}

// One JSON object's fields, read by name; `path` prefixes every error.
class Fields {
 public:
  Fields(const Json& object, std::string path, std::string_view source = kQuantizationJsonName)
      : object_(object), path_(std::move(path)), source_(source) {}

  absl::Status CheckObject(std::initializer_list<std::string_view> known) const {
    if (!object_.is_object()) return Error(path_, "expected an object");
    for (const auto& [key, value] : object_.items()) {
      bool found = false;
      for (std::string_view name : known) found |= name == key;
      if (!found) return Error(Path(key), "unknown field");
    }
    return absl::OkStatus();
  }
  std::string Path(std::string_view key) const {
    return path_.empty() ? std::string(key) : absl::StrCat(path_, ".", std::string(key));
  }
  const Json* Find(std::string_view key) const {
    auto it = object_.find(std::string(key));
    return it == object_.end() ? nullptr : &*it;
  }
  absl::StatusOr<const Json*> Require(std::string_view key) const {
    const Json* value = Find(key);
    if (value == nullptr) return Error(Path(key), "missing");
    return value;
  }
  absl::StatusOr<int64_t> Int(std::string_view key, int64_t lo, int64_t hi) const {
    FF_ASSIGN_OR_RETURN(const Json* value, Require(key));
    return IntValue(*value, Path(key), lo, hi);
  }
  absl::StatusOr<bool> Bool(std::string_view key) const {
    FF_ASSIGN_OR_RETURN(const Json* value, Require(key));
    if (!value->is_boolean()) return Error(Path(key), "expected true or false");
    return value->get<bool>();
  }
  absl::StatusOr<std::string> String(std::string_view key) const {
    FF_ASSIGN_OR_RETURN(const Json* value, Require(key));
    if (!value->is_string()) return Error(Path(key), "expected a string");
    return value->get<std::string>();
  }
  absl::StatusOr<double> Number(std::string_view key, double lo, double hi) const {
    FF_ASSIGN_OR_RETURN(const Json* value, Require(key));
    if (!value->is_number() || !(value->get<double>() > lo && value->get<double>() <= hi)) {
      return Error(Path(key), absl::StrFormat("expected a number in (%g, %g]", lo, hi));
    }
    return value->get<double>();
  }
  absl::StatusOr<std::vector<std::string>> Strings(std::string_view key) const {
    FF_ASSIGN_OR_RETURN(const Json* value, Require(key));
    if (!value->is_array()) return Error(Path(key), "expected an array of strings");
    std::vector<std::string> out;
    for (size_t i = 0; i < value->size(); ++i) {
      if (!(*value)[i].is_string()) {
        return Error(absl::StrCat(Path(key), "[", i, "]"), "expected a string");
      }
      out.push_back((*value)[i].get<std::string>());
    }
    return out;
  }
  absl::StatusOr<std::vector<int64_t>> Ints(std::string_view key, int64_t lo, int64_t hi) const {
    FF_ASSIGN_OR_RETURN(const Json* value, Require(key));
    if (!value->is_array()) return Error(Path(key), "expected an array of integers");
    std::vector<int64_t> out;
    for (size_t i = 0; i < value->size(); ++i) {
      FF_ASSIGN_OR_RETURN(int64_t item,
                          IntValue((*value)[i], absl::StrCat(Path(key), "[", i, "]"), lo, hi));
      out.push_back(item);
    }
    return out;
  }

 private:
  absl::StatusOr<int64_t> IntValue(const Json& value, const std::string& path, int64_t lo,
                                   int64_t hi) const {
    if (!value.is_number_integer()) {
      return Error(path, absl::StrFormat("expected an integer in %d..%d", lo, hi));
    }
    // Unsigned values above int64 do not fit: reject them before converting.
    if (value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return Error(path, absl::StrFormat("expected an integer in %d..%d", lo, hi));
    }
    const int64_t v = value.get<int64_t>();
    if (v < lo || v > hi) {
      return Error(path, absl::StrFormat("expected an integer in %d..%d, got %d", lo, hi, v));
    }
    return v;
  }

  absl::Status Error(const std::string& path, std::string_view problem) const {
    return FieldError(path, problem, source_);
  }

  const Json& object_;
  std::string path_;
  std::string_view source_;
};

template <typename Enum>
struct Named {
  Enum value;
  std::string_view name;
};
constexpr Named<LayerParallelism> kParallelNames[] = {{LayerParallelism::kReplicated, "replicated"},
                                                      {LayerParallelism::kColumn, "column"},
                                                      {LayerParallelism::kRow, "row"}};
constexpr Named<LinearGemmKind> kGemmNames[] = {{LinearGemmKind::kFloatScales, "float_scales"},
                                                {LinearGemmKind::kIntegerScales, "integer_scales"},
                                                {LinearGemmKind::kQuik, "quik"}};
// Only layers whose group size fell back carry the field (no "none").
constexpr Named<GroupSizeFallback> kFallbackNames[] = {
    {GroupSizeFallback::kLargestGpuDivisor, "largest_gpu_divisor"},
    {GroupSizeFallback::kPerChannel, "per_channel"}};

template <typename Enum, size_t N>
absl::StatusOr<Enum> EnumField(const Fields& fields, std::string_view key,
                               const Named<Enum> (&names)[N]) {
  FF_ASSIGN_OR_RETURN(std::string text, fields.String(key));
  std::string options;
  for (const auto& [value, name] : names) {
    if (text == name) return value;
    absl::StrAppend(&options, options.empty() ? "" : ", ", "\"", std::string(name), "\"");
  }
  return FieldError(fields.Path(key),
                    absl::StrFormat("expected one of %s, got \"%s\"", options, text));
}

absl::StatusOr<QuantFormat> ReadFormat(const Json& json, const std::string& path, bool weight,
                                       int64_t cols) {
  Fields fields(json, path);
  if (weight) {
    FF_RETURN_IF_ERROR(fields.CheckObject({"bits", "symmetric", "group_size", "balanced"}));
  } else {
    FF_RETURN_IF_ERROR(
        fields.CheckObject({"bits", "symmetric", "clip_ratio", "static_scale_fp16"}));
  }
  QuantFormat format;
  FF_ASSIGN_OR_RETURN(int64_t bits, fields.Int("bits", 2, 8));
  format.bits = static_cast<int>(bits);
  FF_ASSIGN_OR_RETURN(format.symmetric, fields.Bool("symmetric"));
  if (weight) {
    // Optional (absent in format version 1 files written before ABQ's balanced codes).
    if (json.contains("balanced")) {
      FF_ASSIGN_OR_RETURN(format.balanced, fields.Bool("balanced"));
      if (format.balanced && !format.symmetric) {
        return FieldError(fields.Path("balanced"), "balanced codes must be symmetric");
      }
    }
    FF_ASSIGN_OR_RETURN(format.group_size, fields.Int("group_size", 0, cols));
    if (format.group_size > 0 && cols % format.group_size != 0) {
      return FieldError(
          fields.Path("group_size"),
          absl::StrFormat("%d does not divide the %d columns", format.group_size, cols));
    }
  } else {
    FF_ASSIGN_OR_RETURN(double clip, fields.Number("clip_ratio", 0.0, 1.0));
    format.clip_ratio = static_cast<float>(clip);
  }
  return format;
}

absl::StatusOr<StoredTransform> ReadTransform(const Json& json, const std::string& path) {
  Fields fields(json, path);
  FF_RETURN_IF_ERROR(fields.CheckObject({"kind", "params", "arrays"}));
  StoredTransform transform;
  FF_ASSIGN_OR_RETURN(transform.kind, fields.String("kind"));
  FF_ASSIGN_OR_RETURN(const Json* params, fields.Require("params"));
  if (!params->is_object()) return FieldError(fields.Path("params"), "expected an object");
  transform.params = *params;
  FF_ASSIGN_OR_RETURN(transform.arrays, fields.Strings("arrays"));
  std::set<std::string> unique(transform.arrays.begin(), transform.arrays.end());
  if (unique.size() != transform.arrays.size()) {
    return FieldError(fields.Path("arrays"), "array names repeat");
  }
  return transform;
}

absl::StatusOr<StoredLinearLayer> ReadLayer(const Json& json, const std::string& path) {
  Fields fields(json, path);
  FF_RETURN_IF_ERROR(fields.CheckObject(
      {"name", "parallel", "stacked", "stacked_rows", "out_features", "in_features",
       "transformed_features", "gemm", "weight", "activation", "amplifier_bits", "outlier_channels",
       "bias", "output_shift", "transforms", "group_size_fallback"}));
  StoredLinearLayer layer;
  FF_ASSIGN_OR_RETURN(layer.name, fields.String("name"));
  if (layer.name.empty()) return FieldError(fields.Path("name"), "empty");
  FF_ASSIGN_OR_RETURN(layer.parallel, EnumField(fields, "parallel", kParallelNames));
  FF_ASSIGN_OR_RETURN(layer.out_features, fields.Int("out_features", 1, kMaxFeatures));
  FF_ASSIGN_OR_RETURN(layer.in_features, fields.Int("in_features", 1, kMaxFeatures));
  FF_ASSIGN_OR_RETURN(layer.transformed_features,
                      fields.Int("transformed_features", 1, kMaxFeatures));
  FF_ASSIGN_OR_RETURN(layer.stacked, fields.Strings("stacked"));
  FF_ASSIGN_OR_RETURN(layer.stacked_rows, fields.Ints("stacked_rows", 1, kMaxFeatures));
  int64_t rows = 0;
  for (int64_t r : layer.stacked_rows) rows += r;
  if (layer.stacked.empty() || layer.stacked.size() != layer.stacked_rows.size() ||
      rows != layer.out_features) {
    return FieldError(fields.Path("stacked_rows"),
                      "needs one row count per stacked tensor, adding up to out_features");
  }
  FF_ASSIGN_OR_RETURN(layer.gemm, EnumField(fields, "gemm", kGemmNames));
  FF_ASSIGN_OR_RETURN(layer.outlier_channels,
                      fields.Ints("outlier_channels", 0, layer.transformed_features - 1));
  for (size_t i = 1; i < layer.outlier_channels.size(); ++i) {
    if (layer.outlier_channels[i] <= layer.outlier_channels[i - 1]) {
      return FieldError(fields.Path("outlier_channels"), "must be strictly ascending");
    }
  }
  const int64_t outliers = static_cast<int64_t>(layer.outlier_channels.size());
  if ((layer.gemm == LinearGemmKind::kQuik) != (outliers > 0) ||
      outliers >= layer.transformed_features) {
    return FieldError(fields.Path("outlier_channels"),
                      "QUIK layers need 1..transformed_features-1 of them, other layers none");
  }
  FF_ASSIGN_OR_RETURN(const Json* weight, fields.Require("weight"));
  FF_ASSIGN_OR_RETURN(layer.weight_format, ReadFormat(*weight, fields.Path("weight"), true,
                                                      layer.transformed_features - outliers));
  FF_ASSIGN_OR_RETURN(const Json* activation, fields.Require("activation"));
  FF_ASSIGN_OR_RETURN(layer.activation_format,
                      ReadFormat(*activation, fields.Path("activation"), false, 0));
  if (auto scale = activation->find("static_scale_fp16");
      scale != activation->end() && !scale->is_null()) {
    Fields activation_fields(*activation, fields.Path("activation"));
    FF_ASSIGN_OR_RETURN(int64_t bits, activation_fields.Int("static_scale_fp16", 1, 0x7BFF));
    layer.static_activation_scale = static_cast<uint16_t>(bits);
  }
  if (json.contains("group_size_fallback")) {
    FF_ASSIGN_OR_RETURN(const Json* fallback, fields.Require("group_size_fallback"));
    Fields fallback_fields(*fallback, fields.Path("group_size_fallback"));
    FF_RETURN_IF_ERROR(fallback_fields.CheckObject({"requested", "rule"}));
    FF_ASSIGN_OR_RETURN(layer.requested_group_size,
                        fallback_fields.Int("requested", 1, kMaxFeatures));
    FF_ASSIGN_OR_RETURN(layer.group_size_fallback,
                        EnumField(fallback_fields, "rule", kFallbackNames));
    // The rule is a function of the request and K: a stored pair that contradicts it is corrupt.
    const WeightGroupChoice expected =
        ChooseWeightGroupSize(layer.requested_group_size, layer.transformed_features - outliers);
    if (expected.fallback != layer.group_size_fallback ||
        expected.group_size != layer.weight_format.group_size) {
      return FieldError(
          fallback_fields.Path("rule"),
          absl::StrFormat("requested %d over %d columns gives group size %d (%s), not %d (%s)",
                          layer.requested_group_size, layer.transformed_features - outliers,
                          expected.group_size, GroupSizeFallbackName(expected.fallback),
                          layer.weight_format.group_size,
                          GroupSizeFallbackName(layer.group_size_fallback)));
    }
  }
  FF_ASSIGN_OR_RETURN(int64_t amplifier, fields.Int("amplifier_bits", 0, 30));
  layer.amplifier_bits = static_cast<int>(amplifier);
  if (layer.gemm == LinearGemmKind::kIntegerScales && layer.weight_format.group_size == 0) {
    return FieldError(fields.Path("weight.group_size"), "integer scales need weight groups");
  }
  FF_ASSIGN_OR_RETURN(layer.bias, fields.Bool("bias"));
  if (json.contains("output_shift")) {
    FF_ASSIGN_OR_RETURN(layer.output_shift, fields.Bool("output_shift"));
    if (layer.output_shift && layer.gemm != LinearGemmKind::kFloatScales) {
      return FieldError(fields.Path("output_shift"), "only float-scale layers have one");
    }
  }
  FF_ASSIGN_OR_RETURN(const Json* transforms, fields.Require("transforms"));
  if (!transforms->is_array()) return FieldError(fields.Path("transforms"), "expected an array");
  for (size_t i = 0; i < transforms->size(); ++i) {
    FF_ASSIGN_OR_RETURN(
        StoredTransform transform,
        ReadTransform((*transforms)[i], absl::StrCat(fields.Path("transforms"), "[", i, "]")));
    layer.transforms.push_back(std::move(transform));
  }
  if (layer.transforms.empty() && layer.transformed_features != layer.in_features) {
    return FieldError(fields.Path("transformed_features"),
                      "differs from in_features without input transforms");
  }
  return layer;
}

bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != ".." &&
         name.ends_with(".safetensors");
}

Json FormatToJson(const QuantFormat& format, bool weight) {
  Json json = {{"bits", format.bits}, {"symmetric", format.symmetric}};
  if (weight) {
    json["group_size"] = format.group_size;
    if (format.balanced) json["balanced"] = true;
  } else {
    json["clip_ratio"] = format.clip_ratio;
  }
  return json;
}

}  // namespace

std::string_view LayerParallelismName(LayerParallelism parallel) {
  for (const auto& [value, name] : kParallelNames) {
    if (value == parallel) return name;
  }
  return "?";
}

std::string_view GemmKindName(LinearGemmKind kind) {
  for (const auto& [value, name] : kGemmNames) {
    if (value == kind) return name;
  }
  return "?";
}

std::string StoredTensorName(std::string_view layer, std::string_view what) {
  return absl::StrFormat("%s.%s", layer, what);
}

std::string StoredTransformArrayName(std::string_view layer, size_t index, std::string_view array) {
  return absl::StrFormat("%s.transforms.%d.%s", layer, index, array);
}

namespace {

absl::StatusOr<std::vector<LayerExpertCalibration>> ReadExpertCalibration(const Json& json) {
  if (!json.is_array()) return FieldError("expert_calibration", "expected an array");
  std::vector<LayerExpertCalibration> out;
  std::set<int64_t> layers;
  for (size_t i = 0; i < json.size(); ++i) {
    Fields fields(json[i], absl::StrCat("expert_calibration[", i, "]"));
    FF_RETURN_IF_ERROR(fields.CheckObject({"layer", "experts"}));
    LayerExpertCalibration layer;
    FF_ASSIGN_OR_RETURN(layer.layer, fields.Int("layer", 0, 1 << 20));
    if (!layers.insert(layer.layer).second) {
      return FieldError(fields.Path("layer"),
                        absl::StrFormat("layer %d appears twice", layer.layer));
    }
    FF_ASSIGN_OR_RETURN(const Json* experts, fields.Require("experts"));
    if (!experts->is_array()) return FieldError(fields.Path("experts"), "expected an array");
    for (size_t e = 0; e < experts->size(); ++e) {
      Fields entry((*experts)[e], absl::StrCat(fields.Path("experts"), "[", e, "]"));
      FF_RETURN_IF_ERROR(entry.CheckObject({"expert", "tokens", "methods"}));
      ExpertCalibration expert;
      FF_ASSIGN_OR_RETURN(expert.expert, entry.Int("expert", 0, 1 << 20));
      if (expert.expert != static_cast<int64_t>(e)) {
        return FieldError(entry.Path("expert"), absl::StrFormat("expected %d (by index)", e));
      }
      FF_ASSIGN_OR_RETURN(expert.tokens, entry.Int("tokens", 0, int64_t{1} << 40));
      FF_ASSIGN_OR_RETURN(const Json* methods, entry.Require("methods"));
      Fields projections(*methods, entry.Path("methods"));
      FF_RETURN_IF_ERROR(projections.CheckObject({"w1", "w2", "w3"}));
      for (const char* projection : {"w1", "w2", "w3"}) {
        FF_ASSIGN_OR_RETURN(std::string method, projections.String(projection));
        if (!IsExpertQuantMethodName(method)) {
          return FieldError(projections.Path(projection),
                            "expected gptq, gptq-damped, calibrated or rtn-clip-search");
        }
        expert.methods[projection] = std::move(method);
      }
      layer.experts.push_back(std::move(expert));
    }
    out.push_back(std::move(layer));
  }
  return out;
}

}  // namespace

absl::StatusOr<QuantRecipe> RecipeFromJson(const Json& json, std::string_view default_name,
                                           std::string_view source) {
  if (json.is_object() && json.contains("method")) {
    FF_ASSIGN_OR_RETURN(QuantSpec spec, QuantSpecFromJson(json));
    QuantRecipe recipe;
    recipe.name = std::string(default_name);
    recipe.spec = spec;
    return recipe;
  }
  Fields fields(json, "recipe", source);
  FF_RETURN_IF_ERROR(
      fields.CheckObject({"name", "spec", "weight_clip_search", "min_expert_tokens"}));
  QuantRecipe recipe;
  FF_ASSIGN_OR_RETURN(recipe.name, fields.String("name"));
  if (recipe.name.empty()) return FieldError(fields.Path("name"), "empty", source);
  FF_ASSIGN_OR_RETURN(const Json* spec, fields.Require("spec"));
  absl::StatusOr<QuantSpec> parsed = QuantSpecFromJson(*spec);
  if (!parsed.ok()) {
    return FieldError(fields.Path("spec"), std::string(parsed.status().message()), source);
  }
  recipe.spec = *parsed;
  if (fields.Find("weight_clip_search") != nullptr) {
    FF_ASSIGN_OR_RETURN(recipe.weight_clip_search, fields.Bool("weight_clip_search"));
  }
  if (fields.Find("min_expert_tokens") != nullptr) {
    FF_ASSIGN_OR_RETURN(recipe.min_expert_tokens,
                        fields.Int("min_expert_tokens", -1, int64_t{1} << 40));
  }
  return recipe;
}

Json RecipeToJson(const QuantRecipe& recipe) {
  return {{"name", recipe.name},
          {"spec", QuantSpecToJson(recipe.spec)},
          {"weight_clip_search", recipe.weight_clip_search},
          {"min_expert_tokens", recipe.min_expert_tokens}};
}

absl::StatusOr<QuantizedCheckpointManifest> ParseQuantizedCheckpointManifest(
    std::string_view text) {
  FF_ASSIGN_OR_RETURN(Json json, ParseStrictJson(text, kQuantizationJsonName));
  Fields fields(json, "");
  FF_RETURN_IF_ERROR(
      fields.CheckObject({"format", "format_version", "recipe", "source_model", "calibration",
                          "tensor_files", "layers", "float_layers", "expert_calibration"}));
  FF_ASSIGN_OR_RETURN(std::string format, fields.String("format"));
  if (format != kQuantizedCheckpointFormat) {
    return FieldError("format", absl::StrFormat("expected \"%s\", got \"%s\"",
                                                kQuantizedCheckpointFormat, format));
  }
  QuantizedCheckpointManifest manifest;
  FF_ASSIGN_OR_RETURN(int64_t version, fields.Int("format_version", 1, 1 << 20));
  if (version != kQuantizedCheckpointFormatVersion) {
    return FieldError("format_version",
                      absl::StrFormat("version %d is not supported (this build reads %d)", version,
                                      kQuantizedCheckpointFormatVersion));
  }
  manifest.format_version = static_cast<int>(version);
  FF_ASSIGN_OR_RETURN(const Json* recipe, fields.Require("recipe"));
  FF_ASSIGN_OR_RETURN(manifest.recipe, RecipeFromJson(*recipe));
  FF_ASSIGN_OR_RETURN(manifest.source_model, fields.String("source_model"));
  FF_ASSIGN_OR_RETURN(const Json* calibration, fields.Require("calibration"));
  if (!calibration->is_object()) return FieldError("calibration", "expected an object");
  manifest.calibration = *calibration;
  FF_ASSIGN_OR_RETURN(manifest.tensor_files, fields.Strings("tensor_files"));
  if (manifest.tensor_files.empty()) return FieldError("tensor_files", "empty");
  for (size_t i = 0; i < manifest.tensor_files.size(); ++i) {
    if (!IsPlainFileName(manifest.tensor_files[i])) {
      return FieldError(absl::StrCat("tensor_files[", i, "]"),
                        "expected a *.safetensors file name inside the directory");
    }
  }
  FF_ASSIGN_OR_RETURN(const Json* layers, fields.Require("layers"));
  if (!layers->is_array()) return FieldError("layers", "expected an array");
  std::set<std::string> names;
  for (size_t i = 0; i < layers->size(); ++i) {
    FF_ASSIGN_OR_RETURN(StoredLinearLayer layer,
                        ReadLayer((*layers)[i], absl::StrCat("layers[", i, "]")));
    if (!names.insert(layer.name).second) {
      return FieldError(absl::StrCat("layers[", i, "].name"),
                        absl::StrFormat("layer \"%s\" appears twice", layer.name));
    }
    manifest.layers.push_back(std::move(layer));
  }
  FF_ASSIGN_OR_RETURN(manifest.float_layers, fields.Strings("float_layers"));
  for (const std::string& name : manifest.float_layers) {
    if (names.count(name) != 0) {
      return FieldError("float_layers",
                        absl::StrFormat("layer \"%s\" is also listed as quantized", name));
    }
  }
  if (const Json* experts = fields.Find("expert_calibration"); experts != nullptr) {
    FF_ASSIGN_OR_RETURN(manifest.expert_calibration, ReadExpertCalibration(*experts));
  }
  return manifest;
}

std::string SerializeQuantizedCheckpointManifest(const QuantizedCheckpointManifest& manifest) {
  Json layers = Json::array();
  for (const StoredLinearLayer& layer : manifest.layers) {
    Json activation = FormatToJson(layer.activation_format, false);
    activation["static_scale_fp16"] =
        layer.static_activation_scale ? Json(*layer.static_activation_scale) : Json(nullptr);
    Json transforms = Json::array();
    for (const StoredTransform& transform : layer.transforms) {
      transforms.push_back(
          {{"kind", transform.kind}, {"params", transform.params}, {"arrays", transform.arrays}});
    }
    Json entry = {{"name", layer.name},
                  {"parallel", LayerParallelismName(layer.parallel)},
                  {"stacked", layer.stacked},
                  {"stacked_rows", layer.stacked_rows},
                  {"out_features", layer.out_features},
                  {"in_features", layer.in_features},
                  {"transformed_features", layer.transformed_features},
                  {"gemm", GemmKindName(layer.gemm)},
                  {"weight", FormatToJson(layer.weight_format, true)},
                  {"activation", activation},
                  {"amplifier_bits", layer.amplifier_bits},
                  {"outlier_channels", layer.outlier_channels},
                  {"bias", layer.bias},
                  {"output_shift", layer.output_shift},
                  {"transforms", transforms}};
    if (layer.group_size_fallback != GroupSizeFallback::kNone) {
      entry["group_size_fallback"] = {{"requested", layer.requested_group_size},
                                      {"rule", GroupSizeFallbackName(layer.group_size_fallback)}};
    }
    layers.push_back(std::move(entry));
  }
  Json json = {{"format", kQuantizedCheckpointFormat},
               {"format_version", manifest.format_version},
               {"recipe", RecipeToJson(manifest.recipe)},
               {"source_model", manifest.source_model},
               {"calibration", manifest.calibration},
               {"tensor_files", manifest.tensor_files},
               {"layers", layers},
               {"float_layers", manifest.float_layers}};
  if (!manifest.expert_calibration.empty()) {
    Json per_layer = Json::array();
    for (const LayerExpertCalibration& layer : manifest.expert_calibration) {
      Json experts = Json::array();
      for (const ExpertCalibration& expert : layer.experts) {
        experts.push_back(
            {{"expert", expert.expert}, {"tokens", expert.tokens}, {"methods", expert.methods}});
      }
      per_layer.push_back({{"layer", layer.layer}, {"experts", std::move(experts)}});
    }
    json["expert_calibration"] = std::move(per_layer);
  }
  return json.dump(2) + "\n";
}

}  // namespace flatfleet::quant
