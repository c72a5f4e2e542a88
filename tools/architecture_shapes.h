// The model shapes `bench --arch` and `make-checkpoint --arch` know by name: the architectures
// the product serves (their Hugging Face configs) and llama-tiny's shape, which runs anywhere.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "common/model_config.h"

namespace flatfleet::tools {

// "llama-3-8b", "llama-3-70b", "mixtral-8x7b" or "tiny"; InvalidArgument naming --arch otherwise.
absl::StatusOr<ModelConfig> ArchitectureShape(std::string_view arch);

}  // namespace flatfleet::tools
