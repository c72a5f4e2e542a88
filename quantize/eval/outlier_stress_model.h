// A synthetic "outlier" Llama for stress-testing W4A4 recipes: random weights
// (RandomWeightSource) with a few hidden channels of every input / post-attention RMSNorm weight
// scaled 50-100x, so the inputs of q/k/v/gate/up have a few channels two orders of magnitude
// larger than the rest, the activation pattern of real LLMs (LLM.int8(), SmoothQuant) that
// breaks per-token INT4 quantization.
//
// With `compensate_weights` the matching input columns of q/k/v/gate/up are divided by the same
// factors (SmoothQuant's equivalence run backwards), so the float model computes what the
// unscaled random model computes and only the activations' shape changes, as in real LLMs whose
// outlier channels do not dominate the layer outputs. Without it the 4 channels carry ~99% of
// each input's energy and dominate every projection: the float model itself becomes
// ill-conditioned (even W8A8 flips 12 of 32 top-1 tokens; see docs/ACCURACY.md).
#pragma once

#include <cstdint>
#include <vector>

#include "quantize/eval/model_under_test.h"

namespace flatfleet::quant {

struct OutlierStressOptions {
  uint64_t weight_seed = 7;
  std::vector<int64_t> outlier_channels = {5, 61, 130, 222};
  std::vector<float> outlier_factors = {50.0f, 70.0f, 85.0f, 100.0f};  // per outlier channel
  bool compensate_weights = true;
};

// Demo-sized Llama (engine::DemoModelConfig: hidden 256, 4 layers, SwiGLU 688).
ModelUnderTest OutlierStressModel(const OutlierStressOptions& options = {});

}  // namespace flatfleet::quant
