#include "quant/quantized_backend.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu/sparse_moe.h"
#include "quant/calibrated_linear.h"
#include "quant/data_dependent_linear.h"

namespace flatfleet::quant {
namespace {

// The Backend interface has no status: a layer that cannot be quantized or run is fatal there.
void DieUnlessOk(const absl::Status& status, const char* what) {
  if (!status.ok()) {
    std::fprintf(stderr, "quantized backend: %s: %s\n", what, status.ToString().c_str());
    std::abort();
  }
}

int64_t Rows(const Tensor& t) { return t.rank() == 0 ? 1 : t.size() / t.dim(-1); }

absl::Status CheckSupported(const QuantRecipe& recipe) {
  const QuantSpec& spec = recipe.spec;
  if (spec.weight.bits < 2 || spec.weight.bits > 8 || spec.activation.bits < 2 ||
      spec.activation.bits > 8) {
    return absl::InvalidArgumentError(absl::StrCat(recipe.name, ": bits must be 2..8"));
  }
  if (spec.transform.kind == TransformKind::kKronecker &&
      (spec.outlier_channels > 0 ||
       spec.activation.granularity != ActivationGranularity::kPerToken ||
       spec.scale_kind != ScaleKind::kFloat16)) {
    return absl::UnimplementedError(
        absl::StrCat(recipe.name,
                     ": Kronecker (FlatQuant) transforms need per-token activations, FP16 scales "
                     "and no QUIK outliers"));
  }
  if (spec.scale_kind == ScaleKind::kInteger &&
      (spec.weight.group_size == 0 || spec.outlier_channels > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(recipe.name, ": integer scales need per-group weights and no outliers"));
  }
  if (spec.activation.granularity == ActivationGranularity::kPerTensor &&
      (!spec.activation.symmetric || spec.outlier_channels > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        recipe.name, ": per-tensor static activations must be symmetric and without QUIK"));
  }
  if (spec.flatten.enabled &&
      (spec.transform.kind != TransformKind::kNone || spec.outlier_channels > 0)) {
    return absl::UnimplementedError(
        absl::StrCat(recipe.name, ": FlattenQuant with other online transforms or QUIK"));
  }
  if (spec.weight_quantizer == WeightQuantizer::kGptq && spec.outlier_channels > 0) {
    return absl::UnimplementedError(absl::StrCat(recipe.name, ": GPTQ with QUIK"));
  }
  return absl::OkStatus();
}

}  // namespace

QuantizedCpuLinearWeight::QuantizedCpuLinearWeight(const Tensor& weight, const Tensor* bias,
                                                   bool kept_float)
    : kernels::LinearWeight(weight.dim(0), weight.dim(1)),
      weight_(weight),
      kept_float_(kept_float),
      float_linear_(kernels::cpu::DefaultCpuBackend().PrepareLinear(weight, bias)) {
  if (bias != nullptr) bias_ = *bias;
}

QuantizedCpuLinearWeight::QuantizedCpuLinearWeight(QuantizedLinear stored)
    : kernels::LinearWeight(stored.out_features(), stored.in_features()),
      kept_float_(false),
      stored_(true),
      transforms_(stored.transforms()),
      quantized_(std::move(stored)),
      stale_(false) {}

std::unique_ptr<QuantizedCpuLinearWeight> QuantizedCpuLinearWeight::FromStored(
    QuantizedLinear layer) {
  return std::unique_ptr<QuantizedCpuLinearWeight>(new QuantizedCpuLinearWeight(std::move(layer)));
}

absl::StatusOr<const QuantizedLinear*> QuantizedCpuLinearWeight::Quantized(
    const QuantRecipe& recipe) const {
  if (kept_float_) return nullptr;
  if (stored_) return &*quantized_;  // immutable once loaded
  std::lock_guard<std::mutex> lock(mutex_);
  if (stale_ || !quantized_) {
    FF_ASSIGN_OR_RETURN(
        QuantizedLinear layer,
        BuildCalibratedLinear(weight_, bias_ ? &*bias_ : nullptr, recipe,
                              calibration_.empty() ? nullptr : &calibration_, transforms_));
    quantized_ = std::move(layer);
    stale_ = false;
  }
  return &*quantized_;
}

ActivationCalibration QuantizedCpuLinearWeight::calibration() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return calibration_;
}

QuantizedCpuBackend::QuantizedCpuBackend(QuantRecipe recipe, KeepFloatFilter keep_float)
    : recipe_(std::move(recipe)),
      keep_float_(std::move(keep_float)),
      name_(absl::StrCat("cpu-quant-", recipe_.name)),
      float_backend_(kernels::cpu::DefaultCpuBackend()) {}

absl::StatusOr<std::unique_ptr<QuantizedCpuBackend>> QuantizedCpuBackend::Create(
    QuantRecipe recipe, KeepFloatFilter keep_float) {
  FF_RETURN_IF_ERROR(CheckSupported(recipe));
  return std::unique_ptr<QuantizedCpuBackend>(
      new QuantizedCpuBackend(std::move(recipe), std::move(keep_float)));
}

absl::StatusOr<std::unique_ptr<QuantizedCpuLinearWeight>>
QuantizedCpuBackend::PrepareQuantizedLinear(const Tensor& weight, const Tensor* bias) {
  if (weight.rank() != 2) return absl::InvalidArgumentError("weight must be [out, in]");
  if (bias != nullptr && bias->size() != weight.dim(0)) {
    return absl::InvalidArgumentError("bias must be [out]");
  }
  const bool keep_float = keep_float_ && keep_float_(weight);
  auto handle = std::make_unique<QuantizedCpuLinearWeight>(weight, bias, keep_float);
  if (keep_float) return handle;
  FF_ASSIGN_OR_RETURN(handle->transforms_, OnlineTransformsFor(recipe_, weight.dim(1)));
  // Quantize now so that errors surface at load time; layers that need calibration first
  // (static activation scales) are quantized after it.
  absl::StatusOr<const QuantizedLinear*> quantized = handle->Quantized(recipe_);
  if (!quantized.ok() && !absl::IsFailedPrecondition(quantized.status())) {
    return quantized.status();
  }
  return handle;
}

absl::Status QuantizedCpuBackend::TryLinear(const kernels::LinearWeight& weight, const Tensor& x,
                                            Tensor& y) {
  const auto& handle = static_cast<const QuantizedCpuLinearWeight&>(weight);
  const int64_t m = Rows(x);
  if (x.dim(-1) != handle.in_features() || y.dim(-1) != handle.out_features() || Rows(y) != m) {
    return absl::InvalidArgumentError("Linear: shapes");
  }
  if (handle.kept_float()) {
    float_backend_.Linear(*handle.float_linear_, x, y);
    return absl::OkStatus();
  }
  if (handle.stored() && mode_ != LinearMode::kQuantized) {
    return absl::FailedPreconditionError(
        "a layer loaded from a quantized checkpoint has no float weight: it cannot be calibrated "
        "or run in float passthrough");
  }
  switch (mode_) {
    case LinearMode::kCalibrate: {
      const std::vector<float> transformed = handle.transforms_.ApplyToActivations(x.span(), m);
      {
        std::lock_guard<std::mutex> lock(handle.mutex_);
        handle.calibration_.Record(transformed, m,
                                   handle.transforms_.OutFeatures(handle.in_features()));
        // Raw rows cost up to kMaxRawSamples * in floats per layer: only when used.
        if (NeedsRawCalibration(recipe_) || NeedsRawStatistics(recipe_)) {
          handle.calibration_.RecordRaw(x.span(), m, handle.in_features(),
                                        CalibrationOptionsFor(recipe_));
        }
        handle.stale_ = true;
      }
      float_backend_.Linear(*handle.float_linear_, x, y);
      return absl::OkStatus();
    }
    case LinearMode::kFloatPassthrough: {
      FF_ASSIGN_OR_RETURN(const QuantizedLinear* layer, handle.Quantized(recipe_));
      return layer->ForwardFloat(x.span(), m, y.span());
    }
    case LinearMode::kQuantized: {
      FF_ASSIGN_OR_RETURN(const QuantizedLinear* layer, handle.Quantized(recipe_));
      return layer->Forward(x.span(), m, y.span());
    }
  }
  return absl::InternalError("unknown mode");
}

std::unique_ptr<kernels::LinearWeight> QuantizedCpuBackend::PrepareLinear(const Tensor& weight,
                                                                          const Tensor* bias) {
  absl::StatusOr<std::unique_ptr<QuantizedCpuLinearWeight>> handle =
      PrepareQuantizedLinear(weight, bias);
  DieUnlessOk(handle.status(), "PrepareLinear");
  return *std::move(handle);
}

void QuantizedCpuBackend::Linear(const kernels::LinearWeight& weight, const Tensor& x, Tensor& y) {
  DieUnlessOk(TryLinear(weight, x, y), "Linear");
}

void QuantizedCpuBackend::RmsNorm(const Tensor& x, std::span<const float> weight, float eps,
                                  Tensor& y) {
  float_backend_.RmsNorm(x, weight, eps, y);
}

void QuantizedCpuBackend::Rotary(Tensor& x, int64_t num_heads, int64_t head_dim,
                                 std::span<const int64_t> positions,
                                 std::span<const float> inv_freq) {
  float_backend_.Rotary(x, num_heads, head_dim, positions, inv_freq);
}

void QuantizedCpuBackend::Attention(const Tensor& q,
                                    std::span<const kernels::AttentionSequence> sequences,
                                    const kernels::AttentionShape& shape, Tensor& out) {
  float_backend_.Attention(q, sequences, shape, out);
}

void QuantizedCpuBackend::SiluMul(const Tensor& gate, const Tensor& up, Tensor& out) {
  float_backend_.SiluMul(gate, up, out);
}

void QuantizedCpuBackend::Add(Tensor& x, const Tensor& y) { float_backend_.Add(x, y); }

void QuantizedCpuBackend::Embedding(const Tensor& table, std::span<const int32_t> ids,
                                    Tensor& out) {
  float_backend_.Embedding(table, ids, out);
}

void QuantizedCpuBackend::GatherRows(const Tensor& x, std::span<const int64_t> rows, Tensor& out) {
  float_backend_.GatherRows(x, rows, out);
}

void QuantizedCpuBackend::SplitColumns(const Tensor& x, std::span<Tensor* const> outputs) {
  float_backend_.SplitColumns(x, outputs);
}

void QuantizedCpuBackend::SparseMoe(const Tensor& x, const Tensor& router_logits,
                                    std::span<const kernels::ExpertWeights> experts, int64_t top_k,
                                    Tensor& out) {
  const int64_t rows = Rows(x);
  const int64_t num_experts = static_cast<int64_t>(experts.size());
  if (router_logits.dim(-1) != num_experts || Rows(router_logits) != rows || top_k > num_experts ||
      out.size() != x.size()) {
    DieUnlessOk(absl::InvalidArgumentError("shapes"), "SparseMoe");
  }
  kernels::cpu::ComposeSparseMoe(*this, x, router_logits, experts, top_k, out);
}

}  // namespace flatfleet::quant
