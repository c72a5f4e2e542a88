// Sparse-MoE experts that few calibration tokens reach (docs/QUANTIZATION.md, "Experts that few
// calibration tokens reach"). The router sends each calibration token to top_k experts, so an
// expert's linears (model.layers.N.block_sparse_moe.experts.E.{w1,w2,w3}) see only the m rows
// routed to it: often few, sometimes none. Per expert linear of K inputs:
//
//   m == 0 or m < MinExpertTokens(recipe, K)   kRtnClipSearch: quantized data-free
//   GPTQ recipe and m < K (rank-deficient H)   kDampedGptq: GPTQ with dampening raised to
//                                              kRankDeficientGptqDamp (if the recipe's is lower)
//   otherwise                                  kCalibrated: the recipe's own
//
// The fallback: weights data-free, RTN in the recipe's weight format with the per-group clip
// search (weight_clip_search.h); the recipe's data-independent transforms (Hadamard) stay; no
// SmoothQuant scales, FlattenQuant splits, trained FlatQuant transform or output correction;
// QUIK picks its outlier channels by weight column norm. A per-tensor static activation scale
// (a property of the deployment: kernels and tensor-parallel slicing rely on it) still comes
// from the rows the linear saw; with none it runs per-token dynamic scales instead.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "quant/recipes.h"

namespace flatfleet::quant {

// model.layers.N.block_sparse_moe.experts.E.PROJECTION, parsed.
struct ExpertLinearName {
  int64_t layer = 0;
  int64_t expert = 0;
  std::string projection;  // "w1", "w2" or "w3"
};
// nullopt for any other name (attention, dense MLP, the router, lm_head).
std::optional<ExpertLinearName> ParseExpertLinearName(std::string_view name);

// With QuantRecipe::min_expert_tokens < 0 (auto) the threshold is ceil(K / 16): on held-out rows
// GPTQ from fewer rows is no better than RTN with the clip search (docs/QUANTIZATION.md).
inline constexpr int64_t kAutoMinExpertTokensDivisor = 16;
// GPTQ's dampening (relative to mean diag H) for an expert whose Hessian has rank m < K.
inline constexpr double kRankDeficientGptqDamp = 0.1;

// The fallback threshold for an expert linear of `in_features` inputs.
int64_t MinExpertTokens(const QuantRecipe& recipe, int64_t in_features);

enum class ExpertQuantMethod { kCalibrated, kDampedGptq, kRtnClipSearch };
// quantization.json's expert_calibration[].experts[].methods values: "gptq" (kCalibrated under a
// GPTQ recipe), "calibrated" (any other recipe), "gptq-damped", "rtn-clip-search".
inline constexpr std::string_view kExpertFallbackMethodName = "rtn-clip-search";
inline constexpr std::string_view kExpertDampedGptqMethodName = "gptq-damped";
std::string ExpertQuantMethodName(const QuantRecipe& recipe, ExpertQuantMethod method);
bool IsExpertQuantMethodName(std::string_view name);

// The method for an expert linear of `in_features` inputs that recorded `rows` calibration rows
// (the table above).
ExpertQuantMethod ChooseExpertQuantMethod(const QuantRecipe& recipe, int64_t rows,
                                          int64_t in_features);

// The recipe that `method` quantizes a linear that saw `rows` rows with: `recipe` itself, with
// raised dampening, or the fallback above.
QuantRecipe ExpertQuantRecipe(const QuantRecipe& recipe, ExpertQuantMethod method, int64_t rows);
// Whether quantizing with `effective` (ExpertQuantRecipe's) under `method` reads the linear's
// calibration statistics: always but for the fallback, which reads them only for a static
// activation scale.
bool ExpertQuantUsesStatistics(const QuantRecipe& effective, ExpertQuantMethod method);

}  // namespace flatfleet::quant
