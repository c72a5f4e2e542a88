// One decoder layer of a checkpoint seen as a whole one-layer model whose "tokens" are hidden
// states, so the ordinary model code (attention, rotary, SwiGLU or sparse MoE) runs a single
// layer on captured activations:
//   * layer 0 of the window is layer `layer` of the checkpoint (tensors renamed on the fly);
//   * the embedding table is the hidden states [P, hidden] of the P calibration positions, so
//     token id p looks up position p's hidden state (vocab_size = P);
//   * the final norm is all ones and the LM head is tied to that table: the window's logits
//     are unused, its output is the residual stream before the final norm
//     (QuantizedCpuBackend::set_residual_capture).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/model_config.h"
#include "worker/model/weight_source.h"

namespace flatfleet::quant {

// The one-layer model's config for P positions.
ModelConfig DecoderLayerWindowConfig(const ModelConfig& config, int64_t positions);

// "model.layers.0.X" -> "model.layers.<layer>.X" (and the reverse with RenameLayer(name, 0, l)).
std::string RenameLayer(std::string_view name, int64_t from_layer, int64_t to_layer);

class DecoderLayerWindowSource final : public engine::WeightSource {
 public:
  // `hidden` [positions, hidden_size] must outlive the source.
  DecoderLayerWindowSource(const engine::WeightSource& checkpoint, int64_t layer,
                           std::span<const float> hidden, int64_t hidden_size);

  bool Has(std::string_view name) const override;
  absl::StatusOr<Tensor> Load(std::string_view name,
                              const std::vector<int64_t>& shape) const override;
  absl::StatusOr<Tensor> LoadSlice(std::string_view name, const std::vector<int64_t>& shape,
                                   const engine::TensorSlice& slice) const override;
  absl::StatusOr<engine::RawTensor> LoadRawRows(std::string_view name,
                                                const std::vector<int64_t>& shape,
                                                int64_t row_begin, int64_t row_end) const override;

 private:
  bool Synthetic(std::string_view name) const;

  const engine::WeightSource& checkpoint_;
  int64_t layer_;
  std::span<const float> hidden_;
  int64_t hidden_size_;
};

}  // namespace flatfleet::quant
