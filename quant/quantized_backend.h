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

  bool kept_float() const { return kept_float_; }
  bool stored() const { return stored_; }
  // The current quantized layer (quantizing it first if calibration changed); null when kept in
  // float.
  absl::StatusOr<const QuantizedLinear*> Quantized(const QuantRecipe& recipe) const;
  ActivationCalibration calibration() const;

 private:
  friend class QuantizedCpuBackend;

  explicit QuantizedCpuLinearWeight(QuantizedLinear stored);

  Tensor weight_;
  std::optional<Tensor> bias_;
  bool kept_float_;
  bool stored_ = false;
  std::unique_ptr<kernels::LinearWeight> float_linear_;  // cpu-f32 handle of the original
  InputTransformChain transforms_;  // the recipe's data-independent online transforms

  mutable std::mutex mutex_;
  mutable ActivationCalibration calibration_;
  mutable std::optional<QuantizedLinear> quantized_;
  mutable bool stale_ = true;
};

enum class LinearMode { kQuantized, kCalibrate, kFloatPassthrough };

class QuantizedCpuBackend final : public kernels::Backend {
 public:
  // Errors for recipes this backend cannot run. An empty filter quantizes every linear.
  static absl::StatusOr<std::unique_ptr<QuantizedCpuBackend>> Create(QuantRecipe recipe,
                                                                     KeepFloatFilter keep_float);

  std::string_view name() const override { return name_; }
  const QuantRecipe& recipe() const { return recipe_; }
  LinearMode mode() const { return mode_; }
  void set_mode(LinearMode mode) { mode_ = mode; }

  // PrepareLinear with errors instead of aborting (the interface has no status).
  absl::StatusOr<std::unique_ptr<QuantizedCpuLinearWeight>> PrepareQuantizedLinear(
      const Tensor& weight, const Tensor* bias);
  // Linear with errors instead of aborting.
  absl::Status TryLinear(const kernels::LinearWeight& weight, const Tensor& x, Tensor& y);

  std::unique_ptr<kernels::LinearWeight> PrepareLinear(const Tensor& weight,
                                                       const Tensor* bias) override;
  void Linear(const kernels::LinearWeight& weight, const Tensor& x, Tensor& y) override;
  void RmsNorm(const Tensor& x, std::span<const float> weight, float eps, Tensor& y) override;
  void Rotary(Tensor& x, int64_t num_heads, int64_t head_dim, std::span<const int64_t> positions,
              std::span<const float> inv_freq) override;
  void Attention(const Tensor& q, std::span<const kernels::AttentionSequence> sequences,
                 const kernels::AttentionShape& shape, Tensor& out) override;
  void SiluMul(const Tensor& gate, const Tensor& up, Tensor& out) override;
  void Add(Tensor& x, const Tensor& y) override;
  void Embedding(const Tensor& table, std::span<const int32_t> ids, Tensor& out) override;
  void GatherRows(const Tensor& x, std::span<const int64_t> rows, Tensor& out) override;
  void SplitColumns(const Tensor& x, std::span<Tensor* const> outputs) override;
  // The float backend's routing (softmax, top-k, renormalised) with experts run through this
  // backend's Linear, added in expert order like the float backend.
  void SparseMoe(const Tensor& x, const Tensor& router_logits,
                 std::span<const kernels::ExpertWeights> experts, int64_t top_k,
                 Tensor& out) override;

 private:
  QuantizedCpuBackend(QuantRecipe recipe, KeepFloatFilter keep_float);

  QuantRecipe recipe_;
  KeepFloatFilter keep_float_;
  std::string name_;
  LinearMode mode_ = LinearMode::kQuantized;
  kernels::cpu::CpuBackend& float_backend_;
};

}  // namespace flatfleet::quant
