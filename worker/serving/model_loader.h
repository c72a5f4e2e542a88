// How a worker turns LoadShard's model path into a model and its tokenizer. The service takes
// the loader as a function object so tensor-parallel loading can replace it without touching
// the RPC code.
#pragma once

#include <functional>
#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/tokenizer/tokenizer.h"
#include "flatfleet/v1/worker.pb.h"
#include "worker/model/llama_model.h"

namespace flatfleet::engine {

// LoadShardRequest.model_path that selects the built-in demo model (random weights, bytes).
inline constexpr std::string_view kBuiltinDemoModel = "builtin:demo";

struct LoadedModel {
  // The backend of a quantized checkpoint's model (quant/checkpoint/quantized_checkpoint.h),
  // null for float models (the shared CPU backend). Declared first: it outlives `model`.
  std::shared_ptr<kernels::Backend> backend;
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
};

using ModelLoader = std::function<absl::StatusOr<LoadedModel>(const v1::LoadShardRequest&)>;

// Loads `builtin:demo` or a checkpoint directory (float, or quantized by `flatfleet quantize`,
// which runs on the integer reference kernels) on the CPU. Only tp_size <= 1 (a whole
// model on one rank); larger groups are Unimplemented until tensor parallelism lands. A checkpoint
// without a tokenizer gets the byte tokenizer when its vocabulary covers the bytes.
ModelLoader SingleRankModelLoader();

}  // namespace flatfleet::engine
