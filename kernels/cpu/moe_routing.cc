#include "kernels/cpu/moe_routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace flatfleet::kernels::cpu {

Routing TopKSoftmaxRouting(const float* logits, int64_t rows, int64_t num_experts, int64_t top_k) {
  Routing routing;
  routing.experts.resize(rows * top_k);
  routing.weights.resize(rows * top_k);
  std::vector<float> probs(num_experts);
  std::vector<int32_t> order(num_experts);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * num_experts;
    const float max_logit = *std::max_element(row, row + num_experts);
    float total = 0.0f;
    for (int64_t e = 0; e < num_experts; ++e) {
      probs[e] = std::exp(row[e] - max_logit);
      total += probs[e];
    }
    for (int64_t e = 0; e < num_experts; ++e) probs[e] /= total;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int32_t a, int32_t b) {
      return probs[a] > probs[b] || (probs[a] == probs[b] && a < b);
    });
    float kept = 0.0f;
    for (int64_t i = 0; i < top_k; ++i) kept += probs[order[i]];
    for (int64_t i = 0; i < top_k; ++i) {
      routing.experts[r * top_k + i] = order[i];
      routing.weights[r * top_k + i] = probs[order[i]] / kept;
    }
  }
  return routing;
}

}  // namespace flatfleet::kernels::cpu
