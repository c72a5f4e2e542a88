#include "quant/float_linear_filter.h"

namespace flatfleet::quant {

bool IsKeptFloatByDefault(std::string_view layer_name) {
  return layer_name == "lm_head" || layer_name.ends_with(".block_sparse_moe.gate");
}

KeepFloatFilter KeepFloatByName() { return IsKeptFloatByDefault; }

}  // namespace flatfleet::quant
