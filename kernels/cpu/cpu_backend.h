// The float32 CPU backend: reference numerics for every other backend, multi-threaded through
// ThreadPool::Default().
#pragma once

#include <memory>

#include "kernels/backend.h"
#include "kernels/cpu/gemm.h"

namespace flatfleet::kernels::cpu {

class CpuLinearWeight final : public LinearWeight {
 public:
  CpuLinearWeight(const Tensor& weight, const Tensor* bias);
  const PackedMatrix& packed() const { return packed_; }

 private:
  PackedMatrix packed_;
};

class CpuBackend final : public Backend {
 public:
  std::string_view name() const override { return "cpu-f32"; }
  std::unique_ptr<LinearWeight> PrepareLinear(const Tensor& weight, const Tensor* bias) override;
  void Linear(const LinearWeight& weight, const Tensor& x, Tensor& y) override;
  void RmsNorm(const Tensor& x, std::span<const float> weight, float eps, Tensor& y) override;
  void Rotary(Tensor& x, int64_t num_heads, int64_t head_dim, std::span<const int64_t> positions,
              std::span<const float> inv_freq) override;
  void Attention(const Tensor& q, std::span<const AttentionSequence> sequences,
                 const AttentionShape& shape, Tensor& out) override;
  void SiluMul(const Tensor& gate, const Tensor& up, Tensor& out) override;
  void Add(Tensor& x, const Tensor& y) override;
  void Embedding(const Tensor& table, std::span<const int32_t> ids, Tensor& out) override;
  void GatherRows(const Tensor& x, std::span<const int64_t> rows, Tensor& out) override;
  void SplitColumns(const Tensor& x, std::span<Tensor* const> outputs) override;
  void SparseMoe(const Tensor& x, const Tensor& router_logits,
                 std::span<const ExpertWeights> experts, int64_t top_k, Tensor& out) override;
};

// A process-wide instance (the backend is stateless).
CpuBackend& DefaultCpuBackend();

}  // namespace flatfleet::kernels::cpu
