// The CUDA backend: the op interface (kernels/backend.h) on one GPU. Activations are bf16 in
// device memory (the residual stream and logits float32), linear layers bf16 through cuBLASLt,
// (W8A8 / W4A8 layers through the integer GEMMs: cuda_quantized_linear.h), the KV pool a device
// block pool (bf16, or INT8 with per-head FP16 scales), sampling on the
// device. Host code only: the kernels live in kernels/cuda/*.cu.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "runtime/buffer.h"

namespace flatfleet::kernels::cuda_backend {

struct CudaBackendOptions {
  int device = 0;
  // Share of the device memory the engine may use; the KV pool takes what the weights and the
  // workspace leave of it (vLLM's gpu_memory_utilization).
  double gpu_memory_fraction = 0.9;
  KvDtype kv_dtype = KvDtype::kBFloat16;  // or kInt8
};

class CudaBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const CudaBackendOptions& options);
  ~CudaBackend() override;

  std::string_view name() const override { return name_; }
  runtime::MemoryKind memory() const override { return runtime::MemoryKind::kDevice; }
  runtime::ScalarType activation_type() const override { return runtime::ScalarType::kBFloat16; }
  KvDtype default_kv_dtype() const override { return options_.kv_dtype; }
  int64_t kv_pool_budget_bytes() const override;
  bool DeviceMemory(int64_t* free_bytes, int64_t* total_bytes) const override;
  bool samples_on_device() const override { return true; }
  const CudaBackendOptions& options() const { return options_; }
  // Device bytes held by prepared weights.
  int64_t weight_bytes() const { return weight_bytes_; }

  std::unique_ptr<LinearWeight> PrepareLinear(const Tensor& weight, const Tensor* bias) override;
  absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareNamedLinear(
      const LinearSource& source) override;
  absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareRandomLinear(std::string_view name,
                                                                    int64_t out, int64_t in,
                                                                    uint64_t seed,
                                                                    float stddev) override;
  absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareQuantizedLinear(
      const QuantizedLinearSource& source) override;
  absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareRandomQuantizedLinear(
      std::string_view name, int64_t out, int64_t in, uint64_t seed, float stddev,
      const RandomQuantizedFormat& format) override;
  int64_t LinearScratchBytes(const LinearWeight& weight, int64_t rows) const override;
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
  absl::Status SampleTokens(ExecutionContext& context, const runtime::ConstTensorView& logits,
                            std::span<const DeviceSamplingParams> params, std::span<int32_t> tokens,
                            std::span<float> logprobs,
                            std::span<DeviceTopLogprob> top_logprobs = {}) override;

 private:
  explicit CudaBackend(const CudaBackendOptions& options, std::string name);
  // Copies host values of any float type into device memory as `type` (bf16 or f32) through
  // the pinned staging buffer.
  absl::Status Upload(const runtime::ConstTensorView& host, runtime::ScalarType type, void* device);

  CudaBackendOptions options_;
  std::string name_;
  std::mutex staging_mutex_;
  runtime::Buffer staging_;  // pinned
  int64_t weight_bytes_ = 0;
};

}  // namespace flatfleet::kernels::cuda_backend
