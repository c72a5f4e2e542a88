#include "quantize/decoder_layer_window.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/shape_string.h"

namespace flatfleet::quant {
namespace {

constexpr std::string_view kEmbedding = "model.embed_tokens.weight";
constexpr std::string_view kFinalNorm = "model.norm.weight";

}  // namespace

ModelConfig DecoderLayerWindowConfig(const ModelConfig& config, int64_t positions) {
  ModelConfig window = config;
  window.num_hidden_layers = 1;
  window.vocab_size = positions;
  window.tie_word_embeddings = true;
  return window;
}

std::string RenameLayer(std::string_view name, int64_t from_layer, int64_t to_layer) {
  const std::string from = absl::StrCat("model.layers.", from_layer, ".");
  if (!name.starts_with(from)) return std::string(name);
  return absl::StrCat("model.layers.", to_layer, ".", std::string(name.substr(from.size())));
}

DecoderLayerWindowSource::DecoderLayerWindowSource(const engine::WeightSource& checkpoint,
                                                   int64_t layer, std::span<const float> hidden,
                                                   int64_t hidden_size)
    : checkpoint_(checkpoint), layer_(layer), hidden_(hidden), hidden_size_(hidden_size) {}

bool DecoderLayerWindowSource::Synthetic(std::string_view name) const {
  return name == kEmbedding || name == kFinalNorm;
}

bool DecoderLayerWindowSource::Has(std::string_view name) const {
  return Synthetic(name) || checkpoint_.Has(RenameLayer(name, 0, layer_));
}

absl::StatusOr<Tensor> DecoderLayerWindowSource::Load(std::string_view name,
                                                      const std::vector<int64_t>& shape) const {
  if (name == kEmbedding) {
    const int64_t positions = static_cast<int64_t>(hidden_.size()) / hidden_size_;
    if (shape != std::vector<int64_t>{positions, hidden_size_}) {
      return absl::InternalError(absl::StrCat("layer window: embedding requested as ",
                                              FormatShape(shape), " for ", positions,
                                              " positions"));
    }
    return Tensor(shape, std::vector<float>(hidden_.begin(), hidden_.end()));
  }
  if (name == kFinalNorm) {
    return Tensor(shape, std::vector<float>(Tensor::NumElements(shape), 1.0f));
  }
  return checkpoint_.Load(RenameLayer(name, 0, layer_), shape);
}

absl::StatusOr<Tensor> DecoderLayerWindowSource::LoadSlice(std::string_view name,
                                                           const std::vector<int64_t>& shape,
                                                           const engine::TensorSlice& slice) const {
  if (Synthetic(name)) return WeightSource::LoadSlice(name, shape, slice);
  return checkpoint_.LoadSlice(RenameLayer(name, 0, layer_), shape, slice);
}

absl::StatusOr<engine::RawTensor> DecoderLayerWindowSource::LoadRawRows(
    std::string_view name, const std::vector<int64_t>& shape, int64_t row_begin,
    int64_t row_end) const {
  if (Synthetic(name)) return WeightSource::LoadRawRows(name, shape, row_begin, row_end);
  return checkpoint_.LoadRawRows(RenameLayer(name, 0, layer_), shape, row_begin, row_end);
}

}  // namespace flatfleet::quant
