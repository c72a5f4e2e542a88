// Named quantization recipes (`--recipe w4a8-intscale`): the one place where a recipe name maps
// to its QuantSpec. The QuantizedCpuBackend (quantized_backend.h) runs any recipe listed here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/quant_spec.h"

namespace flatfleet::quant {

// QuantRecipe::min_expert_tokens unless a recipe file or `quantize --min-expert-tokens` says
// otherwise: per expert linear, ceil(in_features / 16) (expert_calibration_fallback.h).
inline constexpr int64_t kAutoMinExpertTokens = -1;

struct QuantRecipe {
  std::string name;
  QuantSpec spec;
  // Per weight channel/group, pick the clip ratio that minimises the weight's RTN MSE
  // (weight_clip_search.h) instead of using spec.weight.clip_ratio.
  bool weight_clip_search = false;
  // ABQ-LLM-style distribution correction: fit a per-output-channel affine map of the quantized
  // output to the float output on calibration inputs and fold it in (calibrated_linear.h).
  bool output_correction = false;
  // A sparse-MoE expert linear that saw fewer calibration rows (tokens routed to its expert) is
  // quantized data-free: RTN with the clip search (expert_calibration_fallback.h). One with no
  // rows always is (0: only those); kAutoMinExpertTokens: ceil(in_features / 16).
  int64_t min_expert_tokens = kAutoMinExpertTokens;
};

// Recipes the backend implements, in table order.
std::vector<std::string> ImplementedRecipeNames();

// The recipe called `name`. Unknown names are errors that list the implemented ones.
absl::StatusOr<QuantRecipe> RecipeByName(std::string_view name);

// Parses "a,b,c" into recipes (same errors as RecipeByName).
absl::StatusOr<std::vector<QuantRecipe>> RecipesFromList(std::string_view comma_separated);

}  // namespace flatfleet::quant
