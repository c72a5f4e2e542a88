#include "quant/quant_spec.h"

#include <array>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace flatfleet::quant {
namespace {

using Json = nlohmann::json;

template <typename Enum>
struct NamedValue {
  Enum value;
  const char* name;
};

constexpr NamedValue<QuantMethod> kMethodNames[] = {{QuantMethod::kFlattenQuant, "flatten_quant"},
                                                    {QuantMethod::kFlatQuant, "flat_quant"},
                                                    {QuantMethod::kIntegerScale, "integer_scale"},
                                                    {QuantMethod::kAbqLlm, "abq_llm"},
                                                    {QuantMethod::kQuik, "quik"},
                                                    {QuantMethod::kSmoothQuant, "smooth_quant"}};
constexpr NamedValue<ScaleKind> kScaleKindNames[] = {{ScaleKind::kFloat16, "fp16"},
                                                     {ScaleKind::kInteger, "integer"}};
constexpr NamedValue<ActivationGranularity> kGranularityNames[] = {
    {ActivationGranularity::kPerToken, "per_token"},
    {ActivationGranularity::kPerTensor, "per_tensor"}};
constexpr NamedValue<TransformKind> kTransformNames[] = {{TransformKind::kNone, "none"},
                                                         {TransformKind::kHadamard, "hadamard"},
                                                         {TransformKind::kKronecker, "kronecker"}};
constexpr NamedValue<WeightQuantizer> kWeightQuantizerNames[] = {{WeightQuantizer::kRtn, "rtn"},
                                                                 {WeightQuantizer::kGptq, "gptq"}};

template <typename Enum, size_t N>
std::string NameOf(const NamedValue<Enum> (&names)[N], Enum value) {
  for (const auto& [v, name] : names) {
    if (v == value) return std::string(name);
  }
  return "?";
}

absl::Status FieldError(std::string_view field, std::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat("quantization spec: field '", std::string(field), "': ", std::string(problem)));
}

// Reads the fields of one JSON object, rejecting unknown keys.
class ObjectReader {
 public:
  ObjectReader(const Json& object, std::string prefix)
      : object_(object), prefix_(std::move(prefix)) {}

  absl::Status CheckIsObjectWithKeys(std::initializer_list<std::string_view> known) const {
    if (!object_.is_object()) {
      return FieldError(prefix_.empty() ? "<root>" : prefix_.substr(0, prefix_.size() - 1),
                        "expected an object");
    }
    for (const auto& [key, value] : object_.items()) {
      bool found = false;
      for (std::string_view name : known) found |= (name == key);
      if (!found) return FieldError(prefix_ + key, "unknown field");
    }
    return absl::OkStatus();
  }

  std::string Path(std::string_view key) const { return prefix_ + std::string(key); }
  const Json* Find(std::string_view key) const {
    auto it = object_.find(std::string(key));
    return it == object_.end() ? nullptr : &*it;
  }

  absl::Status ReadInt(std::string_view key, int64_t lo, int64_t hi, int64_t& out) const {
    const Json* value = Find(key);
    if (value == nullptr) return absl::OkStatus();
    if (!value->is_number_integer() || value->get<int64_t>() < lo || value->get<int64_t>() > hi) {
      return FieldError(Path(key), absl::StrCat("expected an integer in ", lo, "..", hi, ", got ",
                                                value->dump()));
    }
    out = value->get<int64_t>();
    return absl::OkStatus();
  }
  absl::Status ReadInt(std::string_view key, int lo, int hi, int& out) const {
    int64_t wide = out;
    if (auto status = ReadInt(key, int64_t{lo}, int64_t{hi}, wide); !status.ok()) return status;
    out = static_cast<int>(wide);
    return absl::OkStatus();
  }
  absl::Status ReadBool(std::string_view key, bool& out) const {
    const Json* value = Find(key);
    if (value == nullptr) return absl::OkStatus();
    if (!value->is_boolean())
      return FieldError(Path(key), "expected true or false, got " + value->dump());
    out = value->get<bool>();
    return absl::OkStatus();
  }
  absl::Status ReadClipRatio(std::string_view key, double& out) const {
    const Json* value = Find(key);
    if (value == nullptr) return absl::OkStatus();
    if (!value->is_number() || !(value->get<double>() > 0.0 && value->get<double>() <= 1.0)) {
      return FieldError(Path(key), "expected a number in (0, 1], got " + value->dump());
    }
    out = value->get<double>();
    return absl::OkStatus();
  }
  // A finite number in [lo, hi].
  absl::Status ReadNumber(std::string_view key, double lo, double hi, double& out) const {
    const Json* value = Find(key);
    if (value == nullptr) return absl::OkStatus();
    if (!value->is_number() || !(value->get<double>() >= lo && value->get<double>() <= hi)) {
      return FieldError(Path(key), absl::StrCat("expected a number in [", lo, ", ", hi, "], got ",
                                                value->dump()));
    }
    out = value->get<double>();
    return absl::OkStatus();
  }
  absl::Status ReadUnsigned(std::string_view key, uint64_t& out) const {
    const Json* value = Find(key);
    if (value == nullptr) return absl::OkStatus();
    if (!value->is_number_unsigned()) {
      return FieldError(Path(key), "expected a non-negative integer, got " + value->dump());
    }
    out = value->get<uint64_t>();
    return absl::OkStatus();
  }
  template <typename Enum, size_t N>
  absl::Status ReadEnum(std::string_view key, const NamedValue<Enum> (&names)[N], Enum& out) const {
    const Json* value = Find(key);
    if (value == nullptr) return absl::OkStatus();
    std::vector<std::string> options;
    for (const auto& [v, name] : names) {
      if (value->is_string() && value->get<std::string>() == name) {
        out = v;
        return absl::OkStatus();
      }
      options.push_back(absl::StrCat("\"", name, "\""));
    }
    return FieldError(Path(key), absl::StrCat("expected one of ", absl::StrJoin(options, ", "),
                                              ", got ", value->dump()));
  }

 private:
  const Json& object_;
  std::string prefix_;
};

#define FF_SPEC_TRY(expr)                   \
  do {                                      \
    if (auto s = (expr); !s.ok()) return s; \
  } while (false)

absl::Status ReadWeight(const Json& json, WeightQuantSpec& out) {
  ObjectReader reader(json, "weight.");
  FF_SPEC_TRY(
      reader.CheckIsObjectWithKeys({"bits", "group_size", "symmetric", "clip_ratio", "balanced"}));
  FF_SPEC_TRY(reader.ReadInt("bits", 2, 8, out.bits));
  FF_SPEC_TRY(reader.ReadInt("group_size", int64_t{0}, int64_t{1} << 20, out.group_size));
  FF_SPEC_TRY(reader.ReadBool("symmetric", out.symmetric));
  FF_SPEC_TRY(reader.ReadBool("balanced", out.balanced));
  return reader.ReadClipRatio("clip_ratio", out.clip_ratio);
}

absl::Status ReadActivation(const Json& json, ActivationQuantSpec& out) {
  ObjectReader reader(json, "activation.");
  FF_SPEC_TRY(reader.CheckIsObjectWithKeys({"bits", "granularity", "symmetric", "clip_ratio"}));
  FF_SPEC_TRY(reader.ReadInt("bits", 2, 8, out.bits));
  FF_SPEC_TRY(reader.ReadEnum("granularity", kGranularityNames, out.granularity));
  FF_SPEC_TRY(reader.ReadBool("symmetric", out.symmetric));
  return reader.ReadClipRatio("clip_ratio", out.clip_ratio);
}

absl::Status ReadTransform(const Json& json, TransformSpec& out) {
  ObjectReader reader(json, "transform.");
  FF_SPEC_TRY(reader.CheckIsObjectWithKeys({"kind", "seed"}));
  FF_SPEC_TRY(reader.ReadEnum("kind", kTransformNames, out.kind));
  return reader.ReadUnsigned("seed", out.seed);
}

absl::Status ReadGptq(const Json& json, GptqSpec& out) {
  ObjectReader reader(json, "gptq.");
  FF_SPEC_TRY(reader.CheckIsObjectWithKeys({"damp", "block_size", "act_order"}));
  FF_SPEC_TRY(reader.ReadNumber("damp", 0.0, 10.0, out.damp));
  FF_SPEC_TRY(reader.ReadInt("block_size", int64_t{1}, int64_t{1} << 20, out.block_size));
  return reader.ReadBool("act_order", out.act_order);
}

absl::Status ReadSmooth(const Json& json, SmoothSpec& out) {
  ObjectReader reader(json, "smooth.");
  FF_SPEC_TRY(reader.CheckIsObjectWithKeys({"enabled", "alpha", "search_alpha"}));
  FF_SPEC_TRY(reader.ReadBool("enabled", out.enabled));
  FF_SPEC_TRY(reader.ReadNumber("alpha", 0.0, 1.0, out.alpha));
  return reader.ReadBool("search_alpha", out.search_alpha);
}

absl::Status ReadFlatten(const Json& json, FlattenSpec& out) {
  ObjectReader reader(json, "flatten.");
  FF_SPEC_TRY(reader.CheckIsObjectWithKeys({"enabled", "threshold", "max_growth"}));
  FF_SPEC_TRY(reader.ReadBool("enabled", out.enabled));
  FF_SPEC_TRY(reader.ReadNumber("threshold", 1.0, 1e6, out.threshold));
  return reader.ReadNumber("max_growth", 0.0, 8.0, out.max_growth);
}

}  // namespace

absl::StatusOr<QuantSpec> QuantSpecFromJson(const Json& json) {
  QuantSpec spec;
  ObjectReader reader(json, "");
  FF_SPEC_TRY(reader.CheckIsObjectWithKeys({"method", "weight", "activation", "scale_kind",
                                            "max_amplifier_bits", "transform", "outlier_channels",
                                            "weight_quantizer", "gptq", "smooth", "flatten"}));
  if (reader.Find("method") == nullptr) return FieldError("method", "missing");
  FF_SPEC_TRY(reader.ReadEnum("method", kMethodNames, spec.method));
  if (const Json* weight = reader.Find("weight")) FF_SPEC_TRY(ReadWeight(*weight, spec.weight));
  if (const Json* activation = reader.Find("activation")) {
    FF_SPEC_TRY(ReadActivation(*activation, spec.activation));
  }
  FF_SPEC_TRY(reader.ReadEnum("scale_kind", kScaleKindNames, spec.scale_kind));
  FF_SPEC_TRY(reader.ReadInt("max_amplifier_bits", 0, 30, spec.max_amplifier_bits));
  if (const Json* transform = reader.Find("transform")) {
    FF_SPEC_TRY(ReadTransform(*transform, spec.transform));
  }
  FF_SPEC_TRY(
      reader.ReadInt("outlier_channels", int64_t{0}, int64_t{1} << 20, spec.outlier_channels));
  FF_SPEC_TRY(reader.ReadEnum("weight_quantizer", kWeightQuantizerNames, spec.weight_quantizer));
  if (const Json* gptq = reader.Find("gptq")) FF_SPEC_TRY(ReadGptq(*gptq, spec.gptq));
  if (const Json* smooth = reader.Find("smooth")) FF_SPEC_TRY(ReadSmooth(*smooth, spec.smooth));
  if (const Json* flatten = reader.Find("flatten"))
    FF_SPEC_TRY(ReadFlatten(*flatten, spec.flatten));
  // Cross-field rules.
  if (spec.weight_quantizer == WeightQuantizer::kGptq && spec.outlier_channels > 0) {
    return FieldError("weight_quantizer", "\"gptq\" with QUIK outlier channels is not supported");
  }
  if (spec.weight.balanced && (!spec.weight.symmetric || spec.scale_kind == ScaleKind::kInteger ||
                               spec.outlier_channels > 0)) {
    return FieldError("weight.balanced",
                      "balanced codes need symmetric weights, fp16 scales and no outlier channels");
  }
  if (spec.scale_kind == ScaleKind::kInteger && spec.weight.group_size == 0) {
    return FieldError("scale_kind", "\"integer\" needs per-group weights (weight.group_size > 0)");
  }
  if (spec.activation.granularity == ActivationGranularity::kPerTensor &&
      !spec.activation.symmetric) {
    return FieldError("activation.symmetric", "per-tensor static activations are symmetric");
  }
  return spec;
}

absl::StatusOr<QuantSpec> ParseQuantSpec(std::string_view text) {
  Json json = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return absl::InvalidArgumentError("quantization spec: invalid JSON");
  return QuantSpecFromJson(json);
}

Json QuantSpecToJson(const QuantSpec& spec) {
  return Json{
      {"method", NameOf(kMethodNames, spec.method)},
      {"weight",
       {{"bits", spec.weight.bits},
        {"group_size", spec.weight.group_size},
        {"symmetric", spec.weight.symmetric},
        {"clip_ratio", spec.weight.clip_ratio},
        {"balanced", spec.weight.balanced}}},
      {"activation",
       {{"bits", spec.activation.bits},
        {"granularity", NameOf(kGranularityNames, spec.activation.granularity)},
        {"symmetric", spec.activation.symmetric},
        {"clip_ratio", spec.activation.clip_ratio}}},
      {"scale_kind", NameOf(kScaleKindNames, spec.scale_kind)},
      {"max_amplifier_bits", spec.max_amplifier_bits},
      {"transform",
       {{"kind", NameOf(kTransformNames, spec.transform.kind)}, {"seed", spec.transform.seed}}},
      {"outlier_channels", spec.outlier_channels},
      {"weight_quantizer", NameOf(kWeightQuantizerNames, spec.weight_quantizer)},
      {"gptq",
       {{"damp", spec.gptq.damp},
        {"block_size", spec.gptq.block_size},
        {"act_order", spec.gptq.act_order}}},
      {"smooth",
       {{"enabled", spec.smooth.enabled},
        {"alpha", spec.smooth.alpha},
        {"search_alpha", spec.smooth.search_alpha}}},
      {"flatten",
       {{"enabled", spec.flatten.enabled},
        {"threshold", spec.flatten.threshold},
        {"max_growth", spec.flatten.max_growth}}},
  };
}

}  // namespace flatfleet::quant
