#include "quant/stored_layer_on_device.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu/quant/int4_operand_widening.h"
#include "quant/flat_quant_input_transform.h"
#include "quant/flatten_input_transform.h"
#include "quant/hadamard_input_transform.h"
#include "quant/smooth_input_transform.h"

namespace flatfleet::quant {
namespace {

absl::Status Lacks(std::string_view name, std::string_view feature) {
  return absl::FailedPreconditionError(absl::StrCat(
      "layer ", std::string(name), " uses ", std::string(feature),
      ", which has no GPU kernel yet; run this checkpoint with --device cpu (the integer "
      "reference runs every recipe)"));
}

// What the device applies to x before quantizing: a gather and division in the activation
// quantizer (one smoothing or one flattening step), the Hadamard rotation kernel or FlatQuant's
// Kronecker transform kernel.
struct ActivationPrologue {
  std::vector<int32_t> sources;                        // [K] or empty
  std::vector<float> divisors;                         // [K] or empty
  const RandomizedHadamard* rotation = nullptr;        // the layer's own (it outlives the upload)
  const FlatQuantInputTransform* kronecker = nullptr;  // likewise
};

absl::StatusOr<ActivationPrologue> PrologueOf(std::string_view name, const QuantizedLinear& layer) {
  ActivationPrologue prologue;
  const auto& chain = layer.transforms().transforms();
  if (chain.empty()) return prologue;
  if (chain.size() > 1) {
    std::string kinds;
    for (const auto& transform : chain) {
      absl::StrAppend(&kinds, kinds.empty() ? "" : " + ", std::string(transform->kind()));
    }
    return Lacks(name, absl::StrCat("a chain of online input transforms (", kinds, ")"));
  }
  const InputTransform& transform = *chain.front();
  if (const auto* smooth = dynamic_cast<const SmoothInputTransform*>(&transform)) {
    prologue.divisors = smooth->scales();  // t_j = x_j / s_j
    return prologue;
  }
  if (const auto* hadamard = dynamic_cast<const HadamardInputTransform*>(&transform)) {
    prologue.rotation = &hadamard->rotation();  // t = x Q (hadamard_transform.h)
    return prologue;
  }
  if (const auto* flat = dynamic_cast<const FlatQuantInputTransform*>(&transform)) {
    prologue.kronecker = flat;  // t = (x / s) (P1 (x) P2) (kronecker_transform.h)
    return prologue;
  }
  if (const auto* flatten = dynamic_cast<const FlattenInputTransform*>(&transform)) {
    // The transform's column order: the inputs in place, then each split input's extra copies
    // (ascending input); every copy carries x_j / k_j (x_j / 1 is x_j exactly).
    const std::vector<int32_t>& splits = flatten->splits();
    const int64_t in = static_cast<int64_t>(splits.size());
    for (int64_t j = 0; j < in; ++j) prologue.sources.push_back(static_cast<int32_t>(j));
    for (int64_t j = 0; j < in; ++j) {
      for (int32_t copy = 1; copy < splits[j]; ++copy) {
        prologue.sources.push_back(static_cast<int32_t>(j));
      }
    }
    prologue.divisors.reserve(prologue.sources.size());
    for (int32_t j : prologue.sources) {
      prologue.divisors.push_back(static_cast<float>(splits[j]));
    }
    if (static_cast<int64_t>(prologue.sources.size()) != flatten->out_features()) {
      return absl::InternalError(absl::StrCat("layer ", std::string(name), ": flattening gives ",
                                              prologue.sources.size(), " columns, the transform ",
                                              flatten->out_features()));
    }
    return prologue;
  }
  return Lacks(name, absl::StrCat("the online input transform '", std::string(transform.kind()),
                                  "' (the GPU runs smoothing, FlattenQuant's channel split, the "
                                  "randomized Hadamard rotation and FlatQuant's Kronecker "
                                  "transform)"));
}

// The codes and float group scales the GEMM reads (an Integer Scale layer keeps them inside its
// integer_scaled()).
const QuantizedMatrix& StoredWeight(const QuantizedLinear& layer) {
  return layer.gemm_kind() == LinearGemmKind::kIntegerScales ? layer.integer_scaled().weight
                                                             : layer.weight();
}

}  // namespace

absl::Status CheckRunsOnDevice(std::string_view name, const QuantizedLinear& layer) {
  if (name.find(".experts.") != std::string_view::npos) {
    return Lacks(name, "quantized MoE experts (the GPU's grouped GEMM is bf16)");
  }
  switch (layer.gemm_kind()) {
    case LinearGemmKind::kIntegerScales:
      // GemmW4A8's group sums folded in int32 (integer_scale_epilogue.h): 4-bit groups only.
      if (layer.integer_scaled().weight.format.bits != 4 ||
          layer.integer_scaled().weight.format.group_size == 0) {
        return Lacks(name, "integer group scales on a weight that is not 4-bit in groups");
      }
      break;
    case LinearGemmKind::kQuik:
      return Lacks(name, "QUIK's FP16 outlier channels");
    case LinearGemmKind::kFloatScales:
      break;
  }
  FF_RETURN_IF_ERROR(PrologueOf(name, layer).status());
  const QuantFormat& activations = layer.activation_format();
  if (activations.bits < 2 || activations.bits > 8 || !activations.symmetric ||
      activations.group_size != 0 || activations.balanced) {
    return Lacks(
        name, absl::StrCat(activations.bits, "-bit ", activations.group_size != 0 ? "grouped " : "",
                           activations.symmetric ? "" : "asymmetric ", "activations"));
  }
  const QuantFormat& weights = StoredWeight(layer).format;
  // 2- and 3-bit weights (ABQ's balanced codes included) run on the W4A8 GEMMs as INT4 operands
  // (int4_operand_widening.h).
  if (weights.balanced && !WidensToInt4Operands(weights)) {
    return Lacks(name, absl::StrCat("balanced ", weights.bits, "-bit weights"));
  }
  if (weights.bits != 8 && weights.bits != 4 && !WidensToInt4Operands(weights)) {
    return Lacks(name, absl::StrCat(weights.bits, "-bit weights"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> PrepareStoredLayerOnDevice(
    std::string_view name, const QuantizedLinear& layer, kernels::Backend& backend) {
  FF_RETURN_IF_ERROR(CheckRunsOnDevice(name, layer));
  FF_ASSIGN_OR_RETURN(ActivationPrologue prologue, PrologueOf(name, layer));
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
  source.weight = &StoredWeight(layer);
  QuantizedMatrix widened;  // a 2/3-bit weight's INT4 operands: the same integer sums
  if (WidensToInt4Operands(source.weight->format)) {
    FF_ASSIGN_OR_RETURN(widened, WidenToInt4Operands(*source.weight));
    source.weight = &widened;
  }
  if (layer.gemm_kind() == LinearGemmKind::kIntegerScales) {
    source.integer_scaled = &layer.integer_scaled();
  }
  source.activation_clip_ratio = layer.activation_format().clip_ratio;
  source.epilogue_add = epilogue;
  source.activation_bits = layer.activation_format().bits;
  source.static_activation_scale = layer.static_activation_scale().value_or(0);
  source.in_features = layer.in_features();
  source.input_sources = prologue.sources;
  source.input_divisors = prologue.divisors;
  source.rotation = prologue.rotation;
  if (prologue.kronecker != nullptr) {
    source.kronecker.n1 = prologue.kronecker->n1();
    source.kronecker.n2 = prologue.kronecker->n2();
    source.kronecker.scales = prologue.kronecker->scales();
    source.kronecker.p1 = prologue.kronecker->p1();
    source.kronecker.p2 = prologue.kronecker->p2();
  }
  return backend.PrepareQuantizedLinear(source);
}

}  // namespace flatfleet::quant
