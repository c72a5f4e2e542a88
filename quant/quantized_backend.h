// A kernels::Backend that runs linear layers through the integer reference kernels according to
// a quantization recipe (recipes.h) and every other op (norms, rotary, attention, pointwise,
// embedding lookup) through the float32 CPU backend. The model code runs on it unchanged.
//
// PrepareLinear keeps the float weight (once: the packed cpu-f32 handle that calibration and
// kept-float layers run on; the quantizer reads it unpacked) and quantizes it (QuantizedLinear);
// Linear quantizes the activations on the fly. Linears whose name the keep-float filter matches
// (the model's LM head and MoE routers; float_linear_filter.h) run in float32; the unnamed legacy
// PrepareLinear passes an empty name.
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
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "quant/activation_calibration.h"
#include "quant/expert_calibration_fallback.h"
#include "quant/float_linear_filter.h"
#include "quant/quantized_linear.h"
#include "quant/recipes.h"

namespace flatfleet::quant {

class QuantizedCpuLinearWeight final : public kernels::LinearWeight {
 public:
  QuantizedCpuLinearWeight(const Tensor& weight, const Tensor* bias, bool kept_float,
                           std::string name = "");
  // The same from a host view the CPU GEMM packs directly (PackedMatrix::PackableView): the
  // checkpoint's bf16 rows widen into the packed handle with no float32 [out, in] copy first.
  QuantizedCpuLinearWeight(const runtime::ConstTensorView& weight, const Tensor* bias,
                           bool kept_float, std::string name = "");
  // A layer loaded from a quantized checkpoint: no float weight, never re-quantized, cannot be
  // calibrated or run in float passthrough.
  static std::unique_ptr<QuantizedCpuLinearWeight> FromStored(QuantizedLinear layer);

  // A layer PrepareLinear could not prepare (the Backend interface has no status there): every
  // use returns `error`.
  static std::unique_ptr<QuantizedCpuLinearWeight> Failed(int64_t out_features, int64_t in_features,
                                                          absl::Status error);

  // The name the model prepared it under ("model.layers.3.mlp.down_proj"), or empty.
  const std::string& name() const { return name_; }
  bool kept_float() const { return kept_float_; }
  bool stored() const { return stored_; }
  // OK unless the layer could not be prepared (Failed).
  const absl::Status& prepare_error() const { return prepare_error_; }
  // The current quantized layer (quantizing it first if calibration changed); null when kept in
  // float.
  absl::StatusOr<const QuantizedLinear*> Quantized(const QuantRecipe& recipe) const;
  ActivationCalibration calibration() const;
  // Whether the name is a sparse-MoE expert's (expert_calibration_fallback.h), and for the last
  // quantization of one: the calibration rows it recorded and the method they chose (also
  // after ReleaseFloat).
  bool is_expert() const { return expert_; }
  int64_t quantized_rows() const;
  ExpertQuantMethod expert_method() const;
  // Quantizes (if calibration changed) and then drops the float handle and the calibration
  // statistics: the layer runs quantized only from then on, like a stored one (layer-by-layer
  // quantization frees a layer's float copies one linear at a time). This last quantization
  // frees the float handle before it starts and hands GPTQ the calibration's Gram to factor in
  // place; if it fails, the layer is left failed (prepare_error()).
  absl::Status ReleaseFloat(const QuantRecipe& recipe);

 private:
  friend class QuantizedCpuBackend;

  explicit QuantizedCpuLinearWeight(QuantizedLinear stored);
  QuantizedCpuLinearWeight(int64_t out_features, int64_t in_features, absl::Status error);

  // The float weight [out, in] row-major, unpacked from float_linear_.
  Tensor FloatWeight() const;
  // (Re)builds quantized_ from `weight` and the calibration; mutex_ held. `last`: the calibration
  // is not needed afterwards (its Gram may be consumed), nor is `weight` (its values may move
  // into the layer).
  absl::Status QuantizeLocked(const QuantRecipe& recipe, Tensor& weight, bool last) const;

  std::string name_;
  bool expert_ = false;
  std::optional<Tensor> bias_;
  bool kept_float_;
  bool stored_ = false;
  absl::Status prepare_error_;
  // The cpu-f32 handle calibration runs on: the only float copy of the weight (packed; the
  // row-major weight the quantizer reads is unpacked from it when it is needed).
  std::unique_ptr<kernels::cpu::CpuLinearWeight> float_linear_;
  InputTransformChain transforms_;  // the recipe's data-independent online transforms

  mutable std::mutex mutex_;
  mutable ActivationCalibration calibration_;
  mutable std::optional<QuantizedLinear> quantized_;
  mutable bool stale_ = true;
  mutable int64_t quantized_rows_ = 0;
  mutable ExpertQuantMethod expert_method_ = ExpertQuantMethod::kCalibrated;
};

enum class LinearMode { kQuantized, kCalibrate, kFloatPassthrough };

// Norms, rotary, attention, pointwise ops, the KV pool and MoE routing are the float32 CPU
// backend's (inherited); only the linear layers differ.
class QuantizedCpuBackend final : public kernels::cpu::CpuBackend {
 public:
  // Errors for recipes this backend cannot run. An empty filter quantizes every linear.
  // (KeepFloatByName() is the model's rule.)
  static absl::StatusOr<std::unique_ptr<QuantizedCpuBackend>> Create(QuantRecipe recipe,
                                                                     KeepFloatFilter keep_float);

  std::string_view name() const override { return name_; }
  const QuantRecipe& recipe() const { return recipe_; }
  LinearMode mode() const { return mode_; }
  void set_mode(LinearMode mode) { mode_ = mode; }
  // Off: PrepareLinear does not quantize a layer up front to surface errors at load time
  // (layer-by-layer quantization calibrates first and quantizes once, naming the layer on error).
  void set_quantize_at_prepare(bool on) { quantize_at_prepare_ = on; }

  // PrepareLinear with errors instead of aborting; `name` decides keep-float.
  absl::StatusOr<std::unique_ptr<QuantizedCpuLinearWeight>> PrepareQuantizedLinear(
      const Tensor& weight, const Tensor* bias, std::string_view name = "");
  // Linear with errors instead of aborting (host float32 views).
  absl::Status TryLinear(const kernels::LinearWeight& weight, const runtime::ConstTensorView& x,
                         const runtime::TensorView& y);

  // The legacy interface has no status: a layer that cannot be prepared comes back as a handle
  // whose every Linear returns the error (PrepareNamedLinear reports it at load time).
  std::unique_ptr<kernels::LinearWeight> PrepareLinear(const Tensor& weight,
                                                       const Tensor* bias) override;
  absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> PrepareNamedLinear(
      const kernels::LinearSource& source) override;

  // Layer-by-layer calibration (sequential_quantizer.h): while set, every final norm copies the
  // whole residual stream (x + the last block's output, [tokens, hidden], in step order) into
  // `sink` before normalising its logit rows: the decoder stack's output for those tokens.
  void set_residual_capture(std::vector<float>* sink) { residual_capture_ = sink; }
  absl::Status AddRmsNormLogitRows(kernels::ExecutionContext& context,
                                   const runtime::TensorView& residual,
                                   const runtime::ConstTensorView* delta,
                                   const kernels::WeightTensor& weight, float eps,
                                   const runtime::TensorView& out) override;

 protected:
  absl::Status HostLinear(const kernels::LinearWeight& weight, const runtime::ConstTensorView& x,
                          const runtime::TensorView& y) override;

 private:
  QuantizedCpuBackend(QuantRecipe recipe, KeepFloatFilter keep_float);
  // PrepareQuantizedLinear's checks and work on a handle made from W [out, in] by `make`
  // (called with the keep-float decision).
  template <typename Make>
  absl::StatusOr<std::unique_ptr<QuantizedCpuLinearWeight>> Prepare(int64_t out, int64_t in,
                                                                    const Tensor* bias,
                                                                    std::string_view name,
                                                                    const Make& make);

  QuantRecipe recipe_;
  KeepFloatFilter keep_float_;
  std::string name_;
  LinearMode mode_ = LinearMode::kQuantized;
  bool quantize_at_prepare_ = true;
  std::vector<float>* residual_capture_ = nullptr;
};

}  // namespace flatfleet::quant
