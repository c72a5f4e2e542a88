#include "quantize/eval/outlier_stress_model.h"

#include <memory>
#include <string>

#include "common/status_macros.h"
#include "worker/model/demo_model.h"
#include "worker/model/weight_source.h"

namespace flatfleet::quant {
namespace {

class OutlierWeightSource final : public engine::WeightSource {
 public:
  explicit OutlierWeightSource(OutlierStressOptions options)
      : options_(std::move(options)), random_(options_.weight_seed) {}

  bool Has(std::string_view name) const override { return random_.Has(name); }

  absl::StatusOr<Tensor> Load(std::string_view name,
                              const std::vector<int64_t>& shape) const override {
    FF_ASSIGN_OR_RETURN(Tensor tensor, random_.Load(name, shape));
    const bool reads_normed_input =
        name.ends_with("q_proj.weight") || name.ends_with("k_proj.weight") ||
        name.ends_with("v_proj.weight") || name.ends_with("gate_proj.weight") ||
        name.ends_with("up_proj.weight");
    if (options_.compensate_weights && reads_normed_input && tensor.rank() == 2) {
      for (size_t i = 0; i < options_.outlier_channels.size(); ++i) {
        const int64_t channel = options_.outlier_channels[i];
        if (channel >= tensor.dim(1)) continue;
        for (int64_t row = 0; row < tensor.dim(0); ++row) {
          tensor.row(row)[channel] /= options_.outlier_factors[i];
        }
      }
    }
    if (name.ends_with("input_layernorm.weight") ||
        name.ends_with("post_attention_layernorm.weight")) {
      for (size_t i = 0; i < options_.outlier_channels.size(); ++i) {
        const int64_t channel = options_.outlier_channels[i];
        if (channel < tensor.size()) tensor.data()[channel] *= options_.outlier_factors[i];
      }
    }
    return tensor;
  }

 private:
  OutlierStressOptions options_;
  engine::RandomWeightSource random_;
};

}  // namespace

ModelUnderTest OutlierStressModel(const OutlierStressOptions& options) {
  ModelUnderTest model;
  model.name = options.compensate_weights ? "outlier-stress" : "outlier-stress-raw";
  model.config = engine::DemoModelConfig();
  model.weights = std::make_shared<OutlierWeightSource>(options);
  return model;
}

}  // namespace flatfleet::quant
