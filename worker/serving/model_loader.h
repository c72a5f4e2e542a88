// How a worker turns LoadShard into a model and its tokenizer. The service takes the loader as
// a function object so tests (and GPU loaders later) can replace it without touching the RPC
// code.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/tokenizer/tokenizer.h"
#include "flatfleet/v1/worker.pb.h"
#include "worker/collectives/failure_tracking_communicator.h"
#include "worker/collectives/stream_collectives.h"
#include "worker/model/llama_model.h"

namespace flatfleet::engine {

// LoadShardRequest.model_path that selects the built-in demo model (random weights, bytes).
inline constexpr std::string_view kBuiltinDemoModel = "builtin:demo";

struct LoadedModel {
  // The backend of a quantized checkpoint's model (worker/quantized/quantized_checkpoint.h),
  // null for float models (the shared CPU backend). Declared before `model`: it outlives it.
  std::shared_ptr<kernels::Backend> backend;
  // Tensor-parallel ranks only: the group's communicator, which the model runs its collectives
  // on (declared first so it outlives the model).
  std::unique_ptr<collectives::FailureTrackingCommunicator> communicator;
  // NCCL groups (GPU workers): the model's device collectives (they own the NCCL communicator
  // and report failures into `communicator`, so they are declared after it and before the
  // model).
  std::unique_ptr<collectives::StreamCollectives> device_collectives;
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  int tp_rank = 0;
  int tp_size = 1;
};

using ModelLoader = std::function<absl::StatusOr<LoadedModel>(const v1::LoadShardRequest&)>;

struct CpuModelLoaderOptions {
  // Joining the group and every collective, when the rendezvous names no timeout.
  std::chrono::milliseconds default_group_timeout{30000};
  // Floats per INT8 scale of the compressed all-reduce.
  int compression_block_size = 128;
  // Where float checkpoints (and the demo model) run: the CPU reference when null, else e.g.
  // the CUDA backend (`serve worker --device cuda`); it must outlive every loaded model.
  kernels::Backend* backend = nullptr;
  // A progress line while a checkpoint's layers load (serve worker prints it on stderr).
  WeightLoadProgress load_progress;
  // The CUDA device of `backend` (serve worker --gpu), which an NCCL group's rank joins on.
  int cuda_device = 0;
};

// Loads `builtin:demo` or a checkpoint directory (float, or quantized by `flatfleet quantize`,
// which runs on the integer reference kernels) on the CPU. With tp_size > 1 the
// rank first joins its group through the rendezvous (a Gloo TCP store; it listens for peers on
// the host of its own entry in peer_addresses; for an NCCL rendezvous it then also joins the
// NCCL communicator with rank 0's unique id, for the model's device collectives) and then loads
// only its shard. A checkpoint
// without a tokenizer gets the byte tokenizer when its vocabulary covers the bytes.
ModelLoader CpuModelLoader(CpuModelLoaderOptions options = {});

// The host part of "HOST:PORT" as an IPv4 literal ("localhost" becomes 127.0.0.1), for the
// collectives' sockets.
absl::StatusOr<std::string> RendezvousHost(std::string_view address);

}  // namespace flatfleet::engine
