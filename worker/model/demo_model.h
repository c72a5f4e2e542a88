// The built-in demo model: a small Llama with seeded random weights and the byte tokenizer,
// created in memory. Its output is gibberish by design; it exercises the whole engine
// without a checkpoint.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "kernels/backend.h"
#include "worker/model/llama_model.h"

namespace flatfleet::engine {

// hidden 256, 4 layers, 8 heads, 2 KV heads (GQA), head_dim 32, SwiGLU 688, byte vocabulary.
ModelConfig DemoModelConfig();

// `options` may make it one rank of a tensor-parallel group (every rank uses the same seed).
absl::StatusOr<std::unique_ptr<LlamaModel>> MakeDemoModel(kernels::Backend& backend,
                                                          uint64_t seed = 1234,
                                                          ModelOptions options = {});

}  // namespace flatfleet::engine
