// The float32 CPU backend: reference numerics for every other backend, multi-threaded through
// ThreadPool::Default(). Host memory, float32 activations, float32 or INT8 KV pools.
#pragma once

#include <memory>

#include "kernels/backend.h"
#include "kernels/cpu/gemm.h"

namespace flatfleet::kernels::cpu {

class CpuLinearWeight final : public LinearWeight {
 public:
  CpuLinearWeight(const Tensor& weight, const Tensor* bias);
  // Packed straight from a host float32 / bfloat16 / float16 view (PackedMatrix::PackableView).
  CpuLinearWeight(const runtime::ConstTensorView& weight, const Tensor* bias);
  const PackedMatrix& packed() const { return packed_; }

 private:
  PackedMatrix packed_;
};

class CpuBackend : public Backend {
 public:
  std::string_view name() const override { return "cpu-f32"; }
  std::unique_ptr<LinearWeight> PrepareLinear(const Tensor& weight, const Tensor* bias) override;
  absl::StatusOr<std::unique_ptr<WeightTensor>> PrepareWeight(const runtime::ConstTensorView& host,
                                                              WeightUse use) override;
  absl::StatusOr<std::unique_ptr<ExecutionContext>> CreateContext() override;
  absl::StatusOr<std::unique_ptr<KvPool>> CreateKvPool(const KvPoolShape& shape,
                                                       int64_t num_blocks) override;

  absl::Status Linear(ExecutionContext& context, const LinearWeight& weight,
                      const runtime::ConstTensorView& x, const runtime::TensorView& y) override;
  absl::Status AddRmsNorm(ExecutionContext& context, const runtime::TensorView& residual,
                          const runtime::ConstTensorView* delta, const WeightTensor& weight,
                          float eps, const runtime::TensorView& out) override;
  absl::Status AddRmsNormLogitRows(ExecutionContext& context, const runtime::TensorView& residual,
                                   const runtime::ConstTensorView* delta,
                                   const WeightTensor& weight, float eps,
                                   const runtime::TensorView& out) override;
  absl::Status Embedding(ExecutionContext& context, const WeightTensor& table,
                         const runtime::TensorView& out) override;
  absl::Status RotaryKvWrite(ExecutionContext& context, int64_t layer,
                             const runtime::ConstTensorView& qkv, const WeightTensor& inv_freq,
                             const AttentionShape& shape, const runtime::TensorView& q_out,
                             KvPool& pool) override;
  absl::Status Attention(ExecutionContext& context, int64_t layer,
                         const runtime::ConstTensorView& q, const KvPool& pool,
                         const AttentionShape& shape, const runtime::TensorView& out) override;
  absl::Status SiluMul(ExecutionContext& context, const runtime::ConstTensorView& gate_up,
                       const runtime::TensorView& out) override;
  absl::Status SparseMoe(ExecutionContext& context, const runtime::ConstTensorView& x,
                         const runtime::ConstTensorView& router_logits,
                         std::span<const ExpertWeights> experts, int64_t top_k,
                         const runtime::TensorView& out) override;
  absl::Status CopyToHost(ExecutionContext& context, const runtime::ConstTensorView& from,
                          std::span<float> to) override;
  absl::Status CopyFromHost(ExecutionContext& context, std::span<const float> from,
                            const runtime::TensorView& to) override;

  // Reference ops on host float32 tensors, for tests and for composing ops (abort on shape
  // errors: they are programming errors of the caller).
  void Linear(const LinearWeight& weight, const Tensor& x, Tensor& y);
  void RmsNorm(const Tensor& x, std::span<const float> weight, float eps, Tensor& y);
  void Rotary(Tensor& x, int64_t num_heads, int64_t head_dim, std::span<const int64_t> positions,
              std::span<const float> inv_freq);
  void Attention(const Tensor& q, std::span<const AttentionSequence> sequences,
                 const AttentionShape& shape, Tensor& out);
  void SiluMul(const Tensor& gate, const Tensor& up, Tensor& out);
  void Add(Tensor& x, const Tensor& y);
  void GatherRows(const Tensor& x, std::span<const int64_t> rows, Tensor& out);
  void SplitColumns(const Tensor& x, std::span<Tensor* const> outputs);
  void SparseMoe(const Tensor& x, const Tensor& router_logits,
                 std::span<const ExpertWeights> experts, int64_t top_k, Tensor& out);

 protected:
  // The Linear every op of this backend uses (the quantized backend overrides it).
  virtual absl::Status HostLinear(const LinearWeight& weight, const runtime::ConstTensorView& x,
                                  const runtime::TensorView& y);
};

// A process-wide instance (the backend is stateless; state lives in execution contexts).
CpuBackend& DefaultCpuBackend();

}  // namespace flatfleet::kernels::cpu
