// Rotary inverse frequencies, following transformers' rope initialisation functions step by
// step in float32 so that positions rotate by bit-comparable angles.
#include <cmath>
#include <numbers>
#include <vector>

#include "common/model_config.h"

namespace flatfleet {
namespace {

// transformers' `_compute_llama3_parameters`: long wavelengths are divided by `factor`,
// short ones kept, and the band between them interpolated smoothly.
void ApplyLlama3Scaling(const RopeScaling& scaling, std::vector<float>& inv_freq) {
  const double old_context = static_cast<double>(scaling.original_max_position_embeddings);
  const float low_freq_wavelen = static_cast<float>(old_context / scaling.low_freq_factor);
  const float high_freq_wavelen = static_cast<float>(old_context / scaling.high_freq_factor);
  const float factor = static_cast<float>(scaling.factor);
  const float low_freq_factor = static_cast<float>(scaling.low_freq_factor);
  const float band = static_cast<float>(scaling.high_freq_factor - scaling.low_freq_factor);
  const float two_pi = static_cast<float>(2.0 * std::numbers::pi);
  for (float& frequency : inv_freq) {
    const float wavelen = two_pi / frequency;
    const float scaled = wavelen > low_freq_wavelen ? frequency / factor : frequency;
    const bool is_medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    if (is_medium) {
      const float smooth = (static_cast<float>(old_context) / wavelen - low_freq_factor) / band;
      frequency = (1.0f - smooth) * scaled / factor + smooth * scaled;
    } else {
      frequency = scaled;
    }
  }
}

}  // namespace

std::vector<float> RopeInverseFrequencies(const ModelConfig& config) {
  const int64_t dim = config.head_dim;
  std::vector<float> inv_freq;
  if (dim <= 0) return inv_freq;
  inv_freq.reserve(static_cast<size_t>(dim / 2));
  const float base = static_cast<float>(config.rope_theta);
  // inv_freq = 1 / (base ** (arange(0, dim, 2).float() / dim))
  for (int64_t i = 0; i < dim; i += 2) {
    const float exponent = static_cast<float>(i) / static_cast<float>(dim);
    inv_freq.push_back(1.0f / std::pow(base, exponent));
  }
  const RopeScaling& scaling = config.rope_scaling;
  if (scaling.type == "linear") {
    const float factor = static_cast<float>(scaling.factor);
    for (float& frequency : inv_freq) frequency /= factor;
  } else if (scaling.type == "llama3") {
    ApplyLlama3Scaling(scaling, inv_freq);
  }
  return inv_freq;
}

}  // namespace flatfleet
