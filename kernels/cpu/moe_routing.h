// Mixtral routing: softmax over the router logits, top-k experts, weights renormalised to 1.
#pragma once

#include <cstdint>
#include <vector>

namespace flatfleet::kernels::cpu {

struct Routing {
  // [rows * top_k]: row r's experts, by decreasing weight (lower index first on ties).
  std::vector<int32_t> experts;
  std::vector<float> weights;
};

// logits is [rows, num_experts].
Routing TopKSoftmaxRouting(const float* logits, int64_t rows, int64_t num_experts, int64_t top_k);

}  // namespace flatfleet::kernels::cpu
