#include "quant/quantized_backend.h"

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu/sparse_moe.h"
#include "quant/calibrated_linear.h"
#include "quant/data_dependent_linear.h"
#include "quant/phase_timer.h"

namespace flatfleet::quant {
namespace {

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
  if (spec.transform.kind == TransformKind::kKronecker &&
      spec.weight_quantizer == WeightQuantizer::kGptq) {
    return absl::UnimplementedError(
        absl::StrCat(recipe.name, ": GPTQ weights with a trained Kronecker (FlatQuant) transform"));
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
                                                   bool kept_float, std::string name)
    : kernels::LinearWeight(weight.dim(0), weight.dim(1)),
      name_(std::move(name)),
      expert_(ParseExpertLinearName(name_).has_value()),
      kept_float_(kept_float),
      float_linear_(std::make_unique<kernels::cpu::CpuLinearWeight>(weight, bias)) {
  if (bias != nullptr) bias_ = *bias;
}

QuantizedCpuLinearWeight::QuantizedCpuLinearWeight(const runtime::ConstTensorView& weight,
                                                   const Tensor* bias, bool kept_float,
                                                   std::string name)
    : kernels::LinearWeight(weight.rows, weight.cols),
      name_(std::move(name)),
      expert_(ParseExpertLinearName(name_).has_value()),
      kept_float_(kept_float),
      float_linear_(std::make_unique<kernels::cpu::CpuLinearWeight>(weight, bias)) {
  if (bias != nullptr) bias_ = *bias;
}

QuantizedCpuLinearWeight::QuantizedCpuLinearWeight(QuantizedLinear stored)
    : kernels::LinearWeight(stored.out_features(), stored.in_features()),
      kept_float_(false),
      stored_(true),
      transforms_(stored.transforms()),
      quantized_(std::move(stored)),
      stale_(false) {}

QuantizedCpuLinearWeight::QuantizedCpuLinearWeight(int64_t out_features, int64_t in_features,
                                                   absl::Status error)
    : kernels::LinearWeight(out_features, in_features),
      kept_float_(false),
      prepare_error_(std::move(error)) {}

std::unique_ptr<QuantizedCpuLinearWeight> QuantizedCpuLinearWeight::Failed(int64_t out_features,
                                                                           int64_t in_features,
                                                                           absl::Status error) {
  if (error.ok()) error = absl::InternalError("a failed layer needs an error");
  return std::unique_ptr<QuantizedCpuLinearWeight>(
      new QuantizedCpuLinearWeight(out_features, in_features, std::move(error)));
}

std::unique_ptr<QuantizedCpuLinearWeight> QuantizedCpuLinearWeight::FromStored(
    QuantizedLinear layer) {
  return std::unique_ptr<QuantizedCpuLinearWeight>(new QuantizedCpuLinearWeight(std::move(layer)));
}

Tensor QuantizedCpuLinearWeight::FloatWeight() const {
  Tensor weight({out_features(), in_features()});
  float_linear_->packed().Unpack(weight.span());
  return weight;
}

absl::Status QuantizedCpuLinearWeight::QuantizeLocked(const QuantRecipe& recipe, Tensor& weight,
                                                      bool last) const {
  // An expert the router sent few or no calibration tokens to is quantized data-free or by
  // GPTQ with more dampening (expert_calibration_fallback.h).
  const ExpertQuantMethod method =
      expert_ ? ChooseExpertQuantMethod(recipe, calibration_.rows_seen, in_features())
              : ExpertQuantMethod::kCalibrated;
  const QuantRecipe effective = ExpertQuantRecipe(recipe, method, calibration_.rows_seen);
  const bool statistics = !calibration_.empty() && ExpertQuantUsesStatistics(effective, method);
  std::vector<double>* consumable_gram =
      last && statistics && !calibration_.raw_gram.empty() ? &calibration_.raw_gram : nullptr;
  FF_ASSIGN_OR_RETURN(QuantizedLinear layer,
                      BuildCalibratedLinear(weight, bias_ ? &*bias_ : nullptr, effective,
                                            statistics ? &calibration_ : nullptr, transforms_,
                                            consumable_gram, last ? &weight : nullptr));
  quantized_ = std::move(layer);
  stale_ = false;
  quantized_rows_ = calibration_.rows_seen;
  expert_method_ = method;
  return absl::OkStatus();
}

absl::StatusOr<const QuantizedLinear*> QuantizedCpuLinearWeight::Quantized(
    const QuantRecipe& recipe) const {
  if (!prepare_error_.ok()) return prepare_error_;
  if (kept_float_) return nullptr;
  if (stored_) return &*quantized_;  // immutable once loaded
  std::lock_guard<std::mutex> lock(mutex_);
  if (stale_ || !quantized_) {
    Tensor weight = FloatWeight();
    FF_RETURN_IF_ERROR(QuantizeLocked(recipe, weight, /*last=*/false));
  }
  return &*quantized_;
}

int64_t QuantizedCpuLinearWeight::quantized_rows() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return quantized_rows_;
}

ExpertQuantMethod QuantizedCpuLinearWeight::expert_method() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return expert_method_;
}

absl::Status QuantizedCpuLinearWeight::ReleaseFloat(const QuantRecipe& recipe) {
  if (!prepare_error_.ok()) return prepare_error_;
  if (kept_float_ || stored_) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(mutex_);
  if (stale_ || !quantized_) {
    // One float copy at a time: the row-major weight replaces the packed handle.
    Tensor weight = FloatWeight();
    float_linear_.reset();
    if (absl::Status status = QuantizeLocked(recipe, weight, /*last=*/true); !status.ok()) {
      prepare_error_ = status;
      calibration_ = ActivationCalibration();
      return status;
    }
  }
  bias_.reset();
  float_linear_.reset();
  calibration_ = ActivationCalibration();
  quantized_->DropFloatWeight();
  stored_ = true;  // immutable from now on: never re-quantized, calibrated or run in float
  return absl::OkStatus();
}

ActivationCalibration QuantizedCpuLinearWeight::calibration() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return calibration_;
}

QuantizedCpuBackend::QuantizedCpuBackend(QuantRecipe recipe, KeepFloatFilter keep_float)
    : recipe_(std::move(recipe)),
      keep_float_(std::move(keep_float)),
      name_(absl::StrCat("cpu-quant-", recipe_.name)) {}

absl::StatusOr<std::unique_ptr<QuantizedCpuBackend>> QuantizedCpuBackend::Create(
    QuantRecipe recipe, KeepFloatFilter keep_float) {
  FF_RETURN_IF_ERROR(CheckSupported(recipe));
  return std::unique_ptr<QuantizedCpuBackend>(
      new QuantizedCpuBackend(std::move(recipe), std::move(keep_float)));
}

template <typename Make>
absl::StatusOr<std::unique_ptr<QuantizedCpuLinearWeight>> QuantizedCpuBackend::Prepare(
    int64_t out, int64_t in, const Tensor* bias, std::string_view name, const Make& make) {
  if (bias != nullptr && bias->size() != out) {
    return absl::InvalidArgumentError("bias must be [out]");
  }
  const bool keep_float = keep_float_ && keep_float_(name);
  std::unique_ptr<QuantizedCpuLinearWeight> handle = make(keep_float);
  if (keep_float) return handle;
  FF_ASSIGN_OR_RETURN(handle->transforms_, OnlineTransformsFor(recipe_, in));
  if (!quantize_at_prepare_) return handle;
  // Quantize now so that errors surface at load time; layers that need calibration first
  // (static activation scales) are quantized after it.
  absl::StatusOr<const QuantizedLinear*> quantized = handle->Quantized(recipe_);
  if (!quantized.ok() && !absl::IsFailedPrecondition(quantized.status())) {
    return quantized.status();
  }
  return handle;
}

absl::StatusOr<std::unique_ptr<QuantizedCpuLinearWeight>>
QuantizedCpuBackend::PrepareQuantizedLinear(const Tensor& weight, const Tensor* bias,
                                            std::string_view name) {
  if (weight.rank() != 2) return absl::InvalidArgumentError("weight must be [out, in]");
  return Prepare(weight.dim(0), weight.dim(1), bias, name, [&](bool keep_float) {
    return std::make_unique<QuantizedCpuLinearWeight>(weight, bias, keep_float, std::string(name));
  });
}

absl::Status QuantizedCpuBackend::TryLinear(const kernels::LinearWeight& weight,
                                            const runtime::ConstTensorView& x,
                                            const runtime::TensorView& y) {
  const auto* checked = dynamic_cast<const QuantizedCpuLinearWeight*>(&weight);
  if (checked == nullptr) {
    return absl::InvalidArgumentError("Linear: the weight was not prepared by this backend");
  }
  const QuantizedCpuLinearWeight& handle = *checked;
  if (!handle.prepare_error().ok()) return handle.prepare_error();
  const int64_t m = x.rows;
  if (x.cols != handle.in_features() || y.cols != handle.out_features() || y.rows != m ||
      !x.dense() || !y.dense() || x.type != runtime::ScalarType::kFloat32 ||
      y.type != runtime::ScalarType::kFloat32) {
    return absl::InvalidArgumentError(
        absl::StrCat("Linear: x [", x.rows, ", ", x.cols, "] y [", y.rows, ", ", y.cols,
                     "] for a [", handle.out_features(), ", ", handle.in_features(), "] layer"));
  }
  if (handle.kept_float()) return CpuBackend::HostLinear(*handle.float_linear_, x, y);
  if (handle.stored() && mode_ != LinearMode::kQuantized) {
    return absl::FailedPreconditionError(
        "a layer loaded from a quantized checkpoint has no float weight: it cannot be calibrated "
        "or run in float passthrough");
  }
  switch (mode_) {
    case LinearMode::kCalibrate: {
      {
        const ScopedPhase phase(QuantizePhase::kStatistics);
        const std::vector<float> transformed = handle.transforms_.ApplyToActivations(x.floats(), m);
        std::lock_guard<std::mutex> lock(handle.mutex_);
        handle.calibration_.Record(transformed, m,
                                   handle.transforms_.OutFeatures(handle.in_features()));
        // Raw rows cost up to kMaxRawSamples * in floats per layer: only when used.
        if (NeedsRawCalibration(recipe_) || NeedsRawStatistics(recipe_)) {
          handle.calibration_.RecordRaw(x.floats(), m, handle.in_features(),
                                        CalibrationOptionsFor(recipe_));
        }
        handle.stale_ = true;
      }
      return CpuBackend::HostLinear(*handle.float_linear_, x, y);
    }
    case LinearMode::kFloatPassthrough: {
      FF_ASSIGN_OR_RETURN(const QuantizedLinear* layer, handle.Quantized(recipe_));
      return layer->ForwardFloat(x.floats(), m, y.floats());
    }
    case LinearMode::kQuantized: {
      FF_ASSIGN_OR_RETURN(const QuantizedLinear* layer, handle.Quantized(recipe_));
      return layer->Forward(x.floats(), m, y.floats());
    }
  }
  return absl::InternalError("unknown mode");
}

std::unique_ptr<kernels::LinearWeight> QuantizedCpuBackend::PrepareLinear(const Tensor& weight,
                                                                          const Tensor* bias) {
  absl::StatusOr<std::unique_ptr<QuantizedCpuLinearWeight>> handle =
      PrepareQuantizedLinear(weight, bias);
  if (handle.ok()) return *std::move(handle);
  const bool matrix = weight.rank() == 2;
  return QuantizedCpuLinearWeight::Failed(matrix ? weight.dim(0) : 0, matrix ? weight.dim(1) : 0,
                                          handle.status());
}

absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> QuantizedCpuBackend::PrepareNamedLinear(
    const kernels::LinearSource& source) {
  // Packed from the checkpoint's rows where the CPU GEMM can: the same values as widening first
  // (WidenToFloat), without a float32 [out, in] copy filled and dropped per linear.
  const bool packable = kernels::cpu::PackedMatrix::PackableView(source.weight);
  std::optional<Tensor> weight;
  if (!packable) {
    FF_ASSIGN_OR_RETURN(weight, kernels::WidenToFloat(source.weight, source.name));  // its error
  }
  std::optional<Tensor> bias;
  if (source.bias != nullptr) {
    FF_ASSIGN_OR_RETURN(Tensor widened, kernels::WidenToFloat(*source.bias, source.name));
    bias = Tensor({widened.size()}, std::move(widened.vector()));
  }
  const Tensor* bias_ptr = bias ? &*bias : nullptr;
  absl::StatusOr<std::unique_ptr<QuantizedCpuLinearWeight>> handle =
      packable ? Prepare(source.weight.rows, source.weight.cols, bias_ptr, source.name,
                         [&](bool keep_float) {
                           return std::make_unique<QuantizedCpuLinearWeight>(
                               source.weight, bias_ptr, keep_float, std::string(source.name));
                         })
               : PrepareQuantizedLinear(*weight, bias_ptr, source.name);
  if (!handle.ok()) {
    return absl::Status(handle.status().code(), absl::StrCat("layer '", std::string(source.name),
                                                             "': ", handle.status().message()));
  }
  return std::unique_ptr<kernels::LinearWeight>(*std::move(handle));
}

absl::Status QuantizedCpuBackend::AddRmsNormLogitRows(kernels::ExecutionContext& context,
                                                      const runtime::TensorView& residual,
                                                      const runtime::ConstTensorView* delta,
                                                      const kernels::WeightTensor& weight,
                                                      float eps, const runtime::TensorView& out) {
  FF_RETURN_IF_ERROR(CpuBackend::AddRmsNormLogitRows(context, residual, delta, weight, eps, out));
  if (residual_capture_ != nullptr) {
    if (!residual.dense() || residual.type != runtime::ScalarType::kFloat32) {
      return absl::InternalError("residual capture needs a dense float32 residual stream");
    }
    const float* values = residual.as<float>();
    residual_capture_->insert(residual_capture_->end(), values, values + residual.size());
  }
  return absl::OkStatus();
}

absl::Status QuantizedCpuBackend::HostLinear(const kernels::LinearWeight& weight,
                                             const runtime::ConstTensorView& x,
                                             const runtime::TensorView& y) {
  return TryLinear(weight, x, y);
}

}  // namespace flatfleet::quant
