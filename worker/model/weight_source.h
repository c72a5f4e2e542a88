// Where model weights come from: a safetensors checkpoint, or seeded random values (the demo
// model and tests). Names and shapes follow Hugging Face's Llama/Mixtral checkpoints.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/safetensors.h"
#include "common/tensor.h"
#include "kernels/backend.h"
#include "runtime/tensor_view.h"

namespace flatfleet::engine {

// The range [begin, end) of dimension `dim` (0: rows, 1: columns of a matrix) of a tensor.
struct TensorSlice {
  int dim = 0;
  int64_t begin = 0;
  int64_t end = 0;
};

// One linear layer as the model prepares it (checkpoint tensors stacked along the output rows,
// e.g. q_proj, k_proj and v_proj into qkv_proj) and the share of it this rank holds.
struct LinearLayerRequest {
  enum class Parallel { kReplicated, kColumn, kRow };
  // A checkpoint tensor stacked into the layer: `prefix` + "weight" has `total_rows` rows, of
  // which this rank holds [row_begin, row_end).
  struct Part {
    std::string prefix;
    int64_t total_rows = 0;
    int64_t row_begin = 0;
    int64_t row_end = 0;
  };
  std::string name;  // "model.layers.0.self_attn.qkv_proj", "lm_head", ...
  Parallel parallel = Parallel::kReplicated;
  std::vector<Part> parts;  // in stacking order
  int64_t in_features = 0;  // of the whole layer
  // Row-parallel: this rank's input columns [column_begin, column_end); others: all of them.
  int64_t column_begin = 0;
  int64_t column_end = 0;
  bool with_bias = false;  // this rank adds the layer's bias
};

// A tensor (or rows of one) in the source's own element type: a view into a memory-mapped
// checkpoint when possible, else into `owned`. Backends that keep bf16 weights take it as is
// (no float32 host copy); the CPU backends widen it.
struct RawTensor {
  runtime::ConstTensorView view;  // host [rows, cols]; a vector is [1, n]
  std::vector<std::byte> owned;
  int64_t elements() const { return view.rows * view.cols; }
};

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual bool Has(std::string_view name) const = 0;
  // Float32 values of `name`; errors name the tensor and the expected and actual shapes.
  virtual absl::StatusOr<Tensor> Load(std::string_view name,
                                      const std::vector<int64_t>& shape) const = 0;
  // Part of `name`, whose full shape must be `shape` (tensor-parallel shards). The default loads
  // the whole tensor and cuts it; sources that can read a part directly override it.
  virtual absl::StatusOr<Tensor> LoadSlice(std::string_view name, const std::vector<int64_t>& shape,
                                           const TensorSlice& slice) const;
  // Rows [row_begin, row_end) of `name` (a matrix or a vector of shape `shape`) in the source's
  // element type. The default loads float32 through LoadSlice.
  virtual absl::StatusOr<RawTensor> LoadRawRows(std::string_view name,
                                                const std::vector<int64_t>& shape,
                                                int64_t row_begin, int64_t row_end) const;
  // A layer the source provides already prepared on `backend` (a quantized checkpoint's stored
  // layers), or nullptr: the model then loads the float tensors and prepares them itself.
  virtual absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> LoadPreparedLinear(
      const LinearLayerRequest& request, kernels::Backend& backend) const {
    return std::unique_ptr<kernels::LinearWeight>();
  }
};

// Reads a checkpoint directory (or file) through WeightStore.
class CheckpointWeightSource final : public WeightSource {
 public:
  explicit CheckpointWeightSource(std::unique_ptr<WeightStore> store) : store_(std::move(store)) {}
  bool Has(std::string_view name) const override { return store_->Find(name) != nullptr; }
  absl::StatusOr<Tensor> Load(std::string_view name,
                              const std::vector<int64_t>& shape) const override {
    return store_->LoadF32(name, shape);
  }
  // A view of the mapped bytes (float32, bfloat16 and float16 tensors).
  absl::StatusOr<RawTensor> LoadRawRows(std::string_view name, const std::vector<int64_t>& shape,
                                        int64_t row_begin, int64_t row_end) const override;
  // Reads (and converts) only the slice's bytes from the mapped file.
  absl::StatusOr<Tensor> LoadSlice(std::string_view name, const std::vector<int64_t>& shape,
                                   const TensorSlice& slice) const override;

 private:
  std::unique_ptr<WeightStore> store_;
};

// Deterministic pseudo-random weights: each tensor's values depend only on the seed and its
// name. Norm weights are drawn from [0.5, 1.5), embeddings with stddev 1 and other matrices
// with stddev `matrix_stddev`, so that logits are not flat.
class RandomWeightSource final : public WeightSource {
 public:
  explicit RandomWeightSource(uint64_t seed, float matrix_stddev = 0.05f)
      : seed_(seed), matrix_stddev_(matrix_stddev) {}
  bool Has(std::string_view name) const override { return true; }
  absl::StatusOr<Tensor> Load(std::string_view name,
                              const std::vector<int64_t>& shape) const override;

 private:
  uint64_t seed_;
  float matrix_stddev_;
};

}  // namespace flatfleet::engine
