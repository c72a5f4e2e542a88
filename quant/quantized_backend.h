// A kernels::Backend that runs linear layers through the integer reference kernels according to
// a quantization recipe (recipes.h) and every other op (norms, rotary, attention, pointwise,
// embedding lookup) through the float32 CPU backend. The model code runs on it unchanged.
//
// PrepareLinear keeps the float weight and quantizes it (QuantizedLinear); Linear quantizes the
// activations on the fly. Linears matched by the keep-float filter (the model's LM head and MoE
// routers; see float_linear_filter.h and eval/model_under_test.h) run in float32.
//
// Modes (set_mode), for calibration and tests:
//   kQuantized        the quantized layer (default);
//   kCalibrate        float32 outputs, while each layer records its (transformed) input
//                     statistics and, for recipes that use them, raw-input statistics (channel
//                     maxima, a bounded sample of rows, X^T X for GPTQ); the next quantized call
//                     re-quantizes with them (QUIK outlier channels, per-tensor static scales,
//                     FlatQuant training and ABQ output correction: calibrated_linear.h;
//                     SmoothQuant, FlattenQuant, GPTQ: data_dependent_linear.h);
//   kFloatPassthrough the online transform and its folded weight in float, no quantization:
//                     checks the rotation algebra (x Q)(W Q)^T = x W^T.
// Each layer's lazily (re)built quantized state is guarded by a per-layer lock; the mode itself is
// not synchronised, so change it only between forwards.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "quant/activation_calibration.h"
#include "quant/float_linear_filter.h"
#include "quant/quantized_linear.h"
#include "quant/recipes.h"

namespace flatfleet::quant {

class QuantizedCpuLinearWeight final : public kernels::LinearWeight {
 public:
  QuantizedCpuLinearWeight(const Tensor& weight, const Tensor* bias, bool kept_float);
  // A layer loaded from a quantized checkpoint: no float weight, never re-quantized, cannot be
  // calibrated or run in float passthrough.
  static std::unique_ptr<QuantizedCpuLinearWeight> FromStored(QuantizedLinear layer);

  // A layer PrepareLinear could not prepare (the Backend interface has no status there): every
  // use returns `error`.
  static std::unique_ptr<QuantizedCpuLinearWeight> Failed(int64_t out_features, int64_t in_features,
                                                          absl::Status error);

  bool kept_float() const { return kept_float_; }
  bool stored() const { return stored_; }
  // OK unless the layer could not be prepared (Failed).
  const absl::Status& prepare_error() const { return prepare_error_; }
  // The current quantized layer (quantizing it first if calibration changed); null when kept in
  // float.
  absl::StatusOr<const QuantizedLinear*> Quantized(const QuantRecipe& recipe) const;
  ActivationCalibration calibration() const;

 private:
  friend class QuantizedCpuBackend;

  explicit QuantizedCpuLinearWeight(QuantizedLinear stored);
  QuantizedCpuLinearWeight(int64_t out_features, int64_t in_features, absl::Status error);

  Tensor weight_;
  std::optional<Tensor> bias_;
  bool kept_float_;
  bool stored_ = false;
  absl::Status prepare_error_;
  std::unique_ptr<kernels::LinearWeight> float_linear_;  // cpu-f32 handle of the original
  InputTransformChain transforms_;  // the recipe's data-independent online transforms

  mutable std::mutex mutex_;
  mutable ActivationCalibration calibration_;
  mutable std::optional<QuantizedLinear> quantized_;
  mutable bool stale_ = true;
};

enum class LinearMode { kQuantized, kCalibrate, kFloatPassthrough };

// Norms, rotary, attention, pointwise ops, the KV pool and MoE routing are the float32 CPU
// backend's (inherited); only the linear layers differ.
class QuantizedCpuBackend final : public kernels::cpu::CpuBackend {
 public:
  // Errors for recipes this backend cannot run. An empty filter quantizes every linear.
  static absl::StatusOr<std::unique_ptr<QuantizedCpuBackend>> Create(QuantRecipe recipe,
                                                                     KeepFloatFilter keep_float);

  std::string_view name() const override { return name_; }
  const QuantRecipe& recipe() const { return recipe_; }
  LinearMode mode() const { return mode_; }
  void set_mode(LinearMode mode) { mode_ = mode; }

  // PrepareLinear with errors instead of aborting.
  absl::StatusOr<std::unique_ptr<QuantizedCpuLinearWeight>> PrepareQuantizedLinear(
      const Tensor& weight, const Tensor* bias);
  // Linear with errors instead of aborting (host float32 views).
  absl::Status TryLinear(const kernels::LinearWeight& weight, const runtime::ConstTensorView& x,
                         const runtime::TensorView& y);

  // The legacy interface has no status: a layer that cannot be prepared comes back as a handle
  // whose every Linear returns the error (PrepareNamedLinear reports it at load time).
  std::unique_ptr<kernels::LinearWeight> PrepareLinear(const Tensor& weight,
                                                       const Tensor* bias) override;
  absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> PrepareNamedLinear(
      const kernels::LinearSource& source) override;

 protected:
  absl::Status HostLinear(const kernels::LinearWeight& weight, const runtime::ConstTensorView& x,
                          const runtime::TensorView& y) override;

 private:
  QuantizedCpuBackend(QuantRecipe recipe, KeepFloatFilter keep_float);

  QuantRecipe recipe_;
  KeepFloatFilter keep_float_;
  std::string name_;
  LinearMode mode_ = LinearMode::kQuantized;
};

}  // namespace flatfleet::quant
