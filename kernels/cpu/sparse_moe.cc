#include "kernels/cpu/sparse_moe.h"

#include <algorithm>
#include <vector>

#include "common/status_macros.h"
#include "kernels/cpu/moe_routing.h"
#include "kernels/cpu/pointwise.h"

namespace flatfleet::kernels::cpu {

absl::Status ComposeSparseMoe(const HostLinearFn& linear, const runtime::ConstTensorView& x,
                              const runtime::ConstTensorView& router_logits,
                              std::span<const ExpertWeights> experts, int64_t top_k,
                              const runtime::TensorView& out) {
  const int64_t hidden = x.cols;
  const int64_t rows = x.rows;
  const int64_t num_experts = static_cast<int64_t>(experts.size());
  const Routing routing = TopKSoftmaxRouting(router_logits.as<float>(), rows, num_experts, top_k);
  std::fill(out.as<float>(), out.as<float>() + out.size(), 0.0f);
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
    GatherRows(x.as<float>(), hidden, expert_rows, routed.data());
    Tensor gate({m, intermediate});
    Tensor up({m, intermediate});
    FF_RETURN_IF_ERROR(linear(*expert.gate, routed, gate));
    FF_RETURN_IF_ERROR(linear(*expert.up, routed, up));
    SiluMul(gate.data(), up.data(), gate.size(), gate.data());
    Tensor down({m, hidden});
    FF_RETURN_IF_ERROR(linear(*expert.down, gate, down));
    for (int64_t i = 0; i < m; ++i) {
      float* dst = out.row<float>(expert_rows[i]);
      const float* src = down.row(i);
      for (int64_t j = 0; j < hidden; ++j) dst[j] += src[j] * expert_weights[i];
    }
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::kernels::cpu
