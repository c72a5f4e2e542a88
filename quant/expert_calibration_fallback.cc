#include "quant/expert_calibration_fallback.h"

#include <charconv>
#include <vector>

namespace flatfleet::quant {
namespace {

// A non-negative decimal index without sign or leading zeros ("0", "17").
bool ParseIndex(std::string_view text, int64_t& value) {
  if (text.empty() || (text.size() > 1 && text[0] == '0')) return false;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return error == std::errc() && end == text.data() + text.size() && value >= 0;
}

}  // namespace

std::optional<ExpertLinearName> ParseExpertLinearName(std::string_view name) {
  // model . layers . N . block_sparse_moe . experts . E . wK
  std::vector<std::string_view> parts;
  for (size_t begin = 0;;) {
    const size_t dot = name.find('.', begin);
    parts.push_back(name.substr(begin, dot == std::string_view::npos ? dot : dot - begin));
    if (dot == std::string_view::npos) break;
    begin = dot + 1;
  }
  if (parts.size() != 7 || parts[0] != "model" || parts[1] != "layers" ||
      parts[3] != "block_sparse_moe" || parts[4] != "experts" ||
      (parts[6] != "w1" && parts[6] != "w2" && parts[6] != "w3")) {
    return std::nullopt;
  }
  ExpertLinearName parsed;
  if (!ParseIndex(parts[2], parsed.layer) || !ParseIndex(parts[5], parsed.expert)) {
    return std::nullopt;
  }
  parsed.projection = std::string(parts[6]);
  return parsed;
}

int64_t MinExpertTokens(const QuantRecipe& recipe, int64_t in_features) {
  if (recipe.min_expert_tokens >= 0) return recipe.min_expert_tokens;
  return (in_features + kAutoMinExpertTokensDivisor - 1) / kAutoMinExpertTokensDivisor;
}

std::string ExpertQuantMethodName(const QuantRecipe& recipe, ExpertQuantMethod method) {
  switch (method) {
    case ExpertQuantMethod::kRtnClipSearch:
      return std::string(kExpertFallbackMethodName);
    case ExpertQuantMethod::kDampedGptq:
      return std::string(kExpertDampedGptqMethodName);
    case ExpertQuantMethod::kCalibrated:
      break;
  }
  return recipe.spec.weight_quantizer == WeightQuantizer::kGptq ? "gptq" : "calibrated";
}

bool IsExpertQuantMethodName(std::string_view name) {
  return name == "gptq" || name == "calibrated" || name == kExpertDampedGptqMethodName ||
         name == kExpertFallbackMethodName;
}

ExpertQuantMethod ChooseExpertQuantMethod(const QuantRecipe& recipe, int64_t rows,
                                          int64_t in_features) {
  if (rows == 0 || rows < MinExpertTokens(recipe, in_features)) {
    return ExpertQuantMethod::kRtnClipSearch;
  }
  if (recipe.spec.weight_quantizer == WeightQuantizer::kGptq && rows < in_features &&
      recipe.spec.gptq.damp < kRankDeficientGptqDamp) {
    return ExpertQuantMethod::kDampedGptq;
  }
  return ExpertQuantMethod::kCalibrated;
}

QuantRecipe ExpertQuantRecipe(const QuantRecipe& recipe, ExpertQuantMethod method, int64_t rows) {
  QuantRecipe effective = recipe;
  if (method == ExpertQuantMethod::kCalibrated) return effective;
  if (method == ExpertQuantMethod::kDampedGptq) {
    effective.spec.gptq.damp = kRankDeficientGptqDamp;
    return effective;
  }
  QuantSpec& spec = effective.spec;
  spec.weight_quantizer = WeightQuantizer::kRtn;
  effective.weight_clip_search = true;
  effective.output_correction = false;
  spec.smooth.enabled = false;
  spec.flatten.enabled = false;
  if (spec.transform.kind == TransformKind::kKronecker) spec.transform.kind = TransformKind::kNone;
  if (rows == 0) spec.activation.granularity = ActivationGranularity::kPerToken;
  return effective;
}

bool ExpertQuantUsesStatistics(const QuantRecipe& effective, ExpertQuantMethod method) {
  return method != ExpertQuantMethod::kRtnClipSearch ||
         effective.spec.activation.granularity == ActivationGranularity::kPerTensor;
}

}  // namespace flatfleet::quant
