#include "kernels/cpu/sparse_moe.h"

#include <algorithm>
#include <vector>

#include "kernels/cpu/moe_routing.h"

namespace flatfleet::kernels::cpu {

void ComposeSparseMoe(Backend& backend, const Tensor& x, const Tensor& router_logits,
                      std::span<const ExpertWeights> experts, int64_t top_k, Tensor& out) {
  const int64_t hidden = x.dim(-1);
  const int64_t rows = x.size() / hidden;
  const int64_t num_experts = static_cast<int64_t>(experts.size());
  const Routing routing = TopKSoftmaxRouting(router_logits.data(), rows, num_experts, top_k);
  std::fill(out.vector().begin(), out.vector().end(), 0.0f);
  for (int64_t e = 0; e < num_experts; ++e) {
    std::vector<int64_t> expert_rows;
    std::vector<float> expert_weights;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < top_k; ++i) {
        if (routing.experts[r * top_k + i] == e) {
          expert_rows.push_back(r);
          expert_weights.push_back(routing.weights[r * top_k + i]);
        }
      }
    }
    if (expert_rows.empty()) continue;
    const int64_t m = static_cast<int64_t>(expert_rows.size());
    const ExpertWeights& expert = experts[e];
    const int64_t intermediate = expert.gate->out_features();
    Tensor routed({m, hidden});
    backend.GatherRows(x, expert_rows, routed);
    Tensor gate({m, intermediate});
    Tensor up({m, intermediate});
    backend.Linear(*expert.gate, routed, gate);
    backend.Linear(*expert.up, routed, up);
    backend.SiluMul(gate, up, gate);
    Tensor down({m, hidden});
    backend.Linear(*expert.down, gate, down);
    for (int64_t i = 0; i < m; ++i) {
      float* dst = out.row(expert_rows[i]);
      const float* src = down.row(i);
      for (int64_t j = 0; j < hidden; ++j) dst[j] += src[j] * expert_weights[i];
    }
  }
}

}  // namespace flatfleet::kernels::cpu
