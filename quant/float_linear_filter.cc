#include "quant/float_linear_filter.h"

#include <cstring>
#include <memory>

namespace flatfleet::quant {

KeepFloatFilter KeepWeightsInFloat(std::vector<Tensor> float_weights) {
  auto kept = std::make_shared<const std::vector<Tensor>>(std::move(float_weights));
  return [kept](const Tensor& weight) {
    for (const Tensor& candidate : *kept) {
      if (candidate.shape() == weight.shape() &&
          std::memcmp(candidate.data(), weight.data(), weight.size() * sizeof(float)) == 0) {
        return true;
      }
    }
    return false;
  };
}

}  // namespace flatfleet::quant
