// FlatQuant (arXiv 2410.09426) for one linear layer: learns, on the layer's calibration inputs X
// [m, n] and its weight W [N, n],
//
//   a per-channel smoothing s = exp(log_scales) (SmoothQuant's diagonal, folded into W),
//   an invertible Kronecker-factored P = P1 (x) P2 (n = n1 * n2, n1 ~ sqrt(n)),
//   clip ratios alpha_a = sigmoid(activation_clip_logit) (per-token activations) and
//   alpha_w = sigmoid(weight_clip_logit) (weights, one per layer),
//
// minimising the relative output error of the quantized layer
//
//   L = || Qa(X diag(s)^-1 P) Qw(W diag(s) P^-T)^T - X W^T ||^2 / || X W^T ||^2
//
// with Adam. The rows of X diag(s)^-1 P are computed as vec(P1^T Zr P2) (Zr the n1 x n2 view of a
// row), the weight rows as vec(P1^-1 Vr P2^-T), as in kernels/cpu/quant/kronecker_transform.h.
//
// Quantizers (what the integer path does, without the FP16 rounding of the scale): symmetric
// b-bit, qmax = 2^(b-1) - 1, per row (activations: per token) or per group of a weight row,
// scale s = alpha * max|u| / qmax, value = s * clamp(rne(u / s), -qmax, qmax).
//
// Gradients are derived by hand (flat_quant_trainer.cc) with the straight-through estimator:
// d rne(t)/dt := 1 where |t| <= qmax (else 0, the value is clipped), and the scale's dependence on
// alpha and on the row's max|u| (through its arg-max element) is differentiated exactly (LSQ-style
// d value / d s = rne(t) - t inside the range, +-qmax outside). Through the weight side's inverse:
// d(P^-1) = -P^-1 dP P^-1.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/quant/kronecker_transform.h"  // KroneckerLeftFactor

namespace flatfleet {
class ThreadPool;
}  // namespace flatfleet

namespace flatfleet::quant {

struct FlatQuantParams {
  int64_t n1 = 0;
  int64_t n2 = 0;
  std::vector<double> p1;          // n1 x n1, row-major
  std::vector<double> p2;          // n2 x n2, row-major
  std::vector<double> log_scales;  // n: the smoothing s = exp(log_scales)
  double activation_clip_logit = 4.0;
  double weight_clip_logit = 4.0;

  double activation_clip() const;
  double weight_clip() const;
};

// One layer's training data. Spans must outlive the objective.
struct FlatQuantProblem {
  std::span<const float> inputs;  // X [rows, in_features], raw (before any transform)
  int64_t rows = 0;
  std::span<const float> weight;  // W [out_features, in_features]
  int64_t out_features = 0;
  int64_t in_features = 0;
  int activation_bits = 4;
  int weight_bits = 4;
  int64_t weight_group_size = 0;  // 0: one scale per output channel
};

enum class QuantizerMode {
  kNone,  // no quantization: L measures only the transform algebra (0 up to rounding)
  kSte,   // quantized forward, straight-through gradients
};

// The rounding state of a quantized forward: per element rne(t) - t and whether |t| <= qmax.
// Replaying it ("frozen rounding") turns the quantized loss into a smooth function of the
// parameters whose exact gradient is the STE gradient, which finite differences can check.
struct RoundingState {
  std::vector<double> activation_offsets, weight_offsets;
  std::vector<uint8_t> activation_inside, weight_inside;
};

struct FlatQuantLoss {
  double loss = 0.0;
  FlatQuantParams gradient;  // same shapes as the parameters
};

class FlatQuantObjective {
 public:
  // Errors on inconsistent shapes, bits outside 2..8 or a group size that does not divide n.
  // Everything runs on `pool` (null: ThreadPool::Default(), sized by FLATFLEET_THREADS), which
  // must outlive the objective; every result is bit-identical at any pool size, each value being
  // summed in one fixed order.
  static absl::StatusOr<FlatQuantObjective> Create(const FlatQuantProblem& problem,
                                                   ThreadPool* pool = nullptr);

  const FlatQuantProblem& problem() const { return problem_; }

  // L and dL/dparams. `frozen` (from an earlier `record`) replays that rounding state instead of
  // rounding afresh (kSte only). Errors if P1 or P2 is singular.
  // `output_rows` (ascending, optional) restricts the loss to those output channels (weight rows):
  // the stochastic mini-objective the training steps use.
  absl::StatusOr<FlatQuantLoss> Evaluate(const FlatQuantParams& params, QuantizerMode mode,
                                         const RoundingState* frozen = nullptr,
                                         RoundingState* record = nullptr,
                                         std::span<const int64_t> output_rows = {}) const;

  // Evaluate(params, kSte).loss, bit for bit, without the gradient and over the weight rows in
  // chunks of about kLossChunkValues values: the full objective's [out, in] double arrays (about
  // nine at once with the gradient) are never held, only the chunk's (about six).
  static constexpr int64_t kLossChunkValues = int64_t{4} << 20;
  absl::StatusOr<double> Loss(const FlatQuantParams& params,
                              int64_t chunk_values = kLossChunkValues) const;

  // The same loss with the activation side (P, s, alpha_a of `activation_side`) and the weight
  // side (P, s, alpha_w of `weight_side`) parameterised separately; Evaluate's gradient is the
  // sum of the two. Without quantization the tied loss is identically 0 (the transform is exact),
  // the untied one is not: this is what lets finite differences check the transform's gradients
  // on their own.
  absl::StatusOr<double> EvaluateUntied(const FlatQuantParams& activation_side,
                                        const FlatQuantParams& weight_side, QuantizerMode mode,
                                        const RoundingState* frozen, RoundingState* record,
                                        FlatQuantParams* activation_gradient,
                                        FlatQuantParams* weight_gradient,
                                        std::span<const int64_t> output_rows = {}) const;

 private:
  FlatQuantObjective() = default;

  FlatQuantProblem problem_;
  ThreadPool* pool_ = nullptr;
  std::vector<double> target_;  // X W^T, [rows, out_features]
  double target_norm2_ = 1.0;
};

enum class FlatQuantInit {
  kIdentity,  // P1 = I, P2 = I
  kHadamard,  // normalised Sylvester Hadamard factors (power-of-two sizes), else a seeded random
              // orthogonal factor
};

struct FlatQuantOptions {
  FlatQuantInit init = FlatQuantInit::kHadamard;
  // Start the smoothing from SmoothQuant's s_k = sqrt(max|x_k| / max|W_:,k|) (normalised to a
  // geometric mean of 1) instead of s = 1.
  bool smoothquant_init = true;
  int steps = 60;
  double learning_rate = 5e-3;       // P1, P2, log_scales
  double clip_learning_rate = 5e-2;  // the clip logits
  bool learn_weight_clip = true;
  int64_t max_rows = 64;  // the first rows of the problem are used (calibration is a reservoir)
  // Each step's loss covers this many output channels (a seeded random subset; all when fewer),
  // which makes a step ~out/64 times cheaper than the full objective.
  int64_t output_rows_per_step = 64;
  uint64_t seed = 0;  // random orthogonal factors of non-power-of-two sizes
  // The threads the objective runs on (null: ThreadPool::Default()); the result does not depend
  // on their number.
  ThreadPool* pool = nullptr;
};

FlatQuantParams InitialFlatQuantParams(const FlatQuantProblem& problem,
                                       const FlatQuantOptions& options);

struct FlatQuantResult {
  // The final iterate if its full quantized loss is below the initialisation's, else the init.
  FlatQuantParams params;
  double initial_loss = 0.0;
  double trained_loss = 0.0;  // the final iterate's full loss, whether kept or not
  double final_loss = 0.0;    // min(initial_loss, trained_loss): the loss of `params`
};

// Errors when a training step (or the final evaluation) fails, e.g. a singular factor or a
// non-finite loss, naming the step: a broken optimisation is not silently replaced by the
// initialisation.
absl::StatusOr<FlatQuantResult> TrainFlatQuant(const FlatQuantProblem& problem,
                                               const FlatQuantOptions& options);

}  // namespace flatfleet::quant
