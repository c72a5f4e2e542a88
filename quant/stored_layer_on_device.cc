#include "quant/stored_layer_on_device.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace flatfleet::quant {
namespace {

absl::Status Lacks(std::string_view name, std::string_view feature) {
  return absl::FailedPreconditionError(absl::StrCat(
      "layer ", std::string(name), " uses ", std::string(feature),
      ", which has no GPU kernel yet; run this checkpoint with --device cpu (the integer "
      "reference runs every recipe)"));
}

}  // namespace

absl::Status CheckRunsOnDevice(std::string_view name, const QuantizedLinear& layer) {
  if (name.find(".experts.") != std::string_view::npos) {
    return Lacks(name, "quantized MoE experts (the GPU's grouped GEMM is bf16)");
  }
  switch (layer.gemm_kind()) {
    case LinearGemmKind::kIntegerScales:
      return Lacks(name, "integer group scales (Integer Scale)");
    case LinearGemmKind::kQuik:
      return Lacks(name, "QUIK's FP16 outlier channels");
    case LinearGemmKind::kFloatScales:
      break;
  }
  if (!layer.transforms().empty()) {
    return Lacks(name, "an online input transform (rotation, FlatQuant, smoothing or flattening)");
  }
  if (layer.static_activation_scale().has_value()) {
    return Lacks(name, "a static per-tensor activation scale");
  }
  const QuantFormat& activations = layer.activation_format();
  if (activations.bits != 8 || !activations.symmetric || activations.group_size != 0 ||
      activations.balanced) {
    return Lacks(
        name, absl::StrCat(activations.bits, "-bit ", activations.group_size != 0 ? "grouped " : "",
                           activations.symmetric ? "" : "asymmetric ", "activations"));
  }
  const QuantFormat& weights = layer.weight().format;
  if (weights.bits != 8 && weights.bits != 4) {
    return Lacks(name, absl::StrCat(weights.bits, "-bit weights"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> PrepareStoredLayerOnDevice(
    std::string_view name, const QuantizedLinear& layer, kernels::Backend& backend) {
  FF_RETURN_IF_ERROR(CheckRunsOnDevice(name, layer));
  // The CPU adds the bias, then the output shift; the device adds their sum (one rounding more
  // where a layer has both, far below the bf16 output's).
  std::vector<float> epilogue;
  if (!layer.bias().empty() || !layer.output_shift().empty()) {
    epilogue.assign(layer.out_features(), 0.0f);
    for (int64_t j = 0; j < layer.out_features(); ++j) {
      if (!layer.bias().empty()) epilogue[j] += layer.bias()[j];
      if (!layer.output_shift().empty()) epilogue[j] += layer.output_shift()[j];
    }
  }
  kernels::QuantizedLinearSource source;
  source.name = name;
  source.weight = &layer.weight();
  source.activation_clip_ratio = layer.activation_format().clip_ratio;
  source.epilogue_add = epilogue;
  return backend.PrepareQuantizedLinear(source);
}

}  // namespace flatfleet::quant
