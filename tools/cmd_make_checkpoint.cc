// `flatfleet make-checkpoint`: writes a Hugging Face-style checkpoint (config.json, bf16
// safetensors shards, model.safetensors.index.json) of seeded random weights with the shapes of
// a served architecture, and as many decoder layers as asked: inputs for quantization tests and
// benchmarks at real layer shapes (a 2-layer Llama-3-70B is about 4.5 GB) without a download.
// One tensor is in memory at a time.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "common/dtype.h"
#include "common/model_config.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "quant/sharded_tensor_writer.h"
#include "tools/architecture_shapes.h"
#include "tools/commands.h"
#include "worker/model/llama_weights.h"
#include "worker/model/seeded_weight_source.h"
#include "worker/quantized/quantized_checkpoint.h"

namespace flatfleet::tools {
namespace {

namespace fs = std::filesystem;

struct MakeCheckpointOptions {
  std::string arch;
  int64_t layers = 2;
  int64_t vocab = 0;  // 0: the architecture's
  bool random = false;
  uint64_t seed = 1;
  double shard_size_gb = 4.0;
  std::string out_dir;
  bool force = false;
};

nlohmann::json ConfigJson(const ModelConfig& c) {
  nlohmann::json json = {
      {"model_type", c.model_type},
      {"architectures", {c.is_moe() ? "MixtralForCausalLM" : "LlamaForCausalLM"}},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"head_dim", c.head_dim},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"max_position_embeddings", c.max_position_embeddings},
      {"tie_word_embeddings", false},
      {"torch_dtype", "bfloat16"}};
  if (c.is_moe()) {
    json["num_local_experts"] = c.num_local_experts;
    json["num_experts_per_tok"] = c.num_experts_per_tok;
  }
  return json;
}

absl::Status RunMakeCheckpoint(const MakeCheckpointOptions& options) {
  if (!options.random) {
    return absl::InvalidArgumentError("only --random checkpoints can be made (pass --random)");
  }
  FF_RETURN_IF_ERROR(quant::CheckOutputDirectory(options.out_dir, options.force));
  FF_ASSIGN_OR_RETURN(ModelConfig config, ArchitectureShape(options.arch));
  if (options.layers <= 0) return absl::InvalidArgumentError("--layers must be positive");
  config.num_hidden_layers = options.layers;
  if (options.vocab > 0) config.vocab_size = options.vocab;

  const fs::path temporary = quant::SiblingPath(options.out_dir, "tmp");
  std::error_code error;
  fs::create_directories(temporary, error);
  if (error) {
    return absl::InternalError(
        absl::StrFormat("cannot create %s: %s", temporary.string(), error.message()));
  }
  absl::Status status = [&]() -> absl::Status {
    const engine::SeededWeightSource source(options.seed);
    quant::ShardedTensorWriter writer(
        temporary, static_cast<int64_t>(options.shard_size_gb * double(int64_t{1} << 30)),
        {{"format", "pt"}});
    std::vector<std::byte> bytes;
    for (const auto& [name, shape] : engine::LlamaTensorShapes(config)) {
      FF_ASSIGN_OR_RETURN(Tensor values, source.Load(name, shape));
      bytes.resize(values.size() * sizeof(uint16_t));
      auto* out = reinterpret_cast<uint16_t*>(bytes.data());
      for (int64_t i = 0; i < values.size(); ++i) out[i] = FloatToBF16(values.data()[i]);
      FF_RETURN_IF_ERROR(writer.Add(name, DType::kBF16, shape, bytes));
    }
    FF_ASSIGN_OR_RETURN(quant::WrittenShards shards, writer.Finish());
    const nlohmann::json index = {{"metadata", {{"total_size", shards.total_bytes}}},
                                  {"weight_map", shards.weight_map}};
    FF_RETURN_IF_ERROR(
        quant::WriteTextFile(temporary / "model.safetensors.index.json", index.dump(1)));
    FF_RETURN_IF_ERROR(quant::WriteTextFile(temporary / "config.json", ConfigJson(config).dump(1)));
    // The written config must read back as the same shapes.
    FF_RETURN_IF_ERROR(LoadModelConfig(temporary).status());
    FF_RETURN_IF_ERROR(quant::CheckOutputDirectory(options.out_dir, options.force));
    FF_RETURN_IF_ERROR(quant::MoveIntoPlace(temporary, options.out_dir));
    std::fprintf(
        stderr, "make-checkpoint: %s, %lld layers, vocab %lld: %.2f GB in %zu shards -> %s\n",
        options.arch.c_str(), static_cast<long long>(config.num_hidden_layers),
        static_cast<long long>(config.vocab_size), static_cast<double>(shards.total_bytes) / 1e9,
        shards.files.size(), options.out_dir.c_str());
    return absl::OkStatus();
  }();
  if (!status.ok()) fs::remove_all(temporary, error);
  return status;
}

}  // namespace

CommandRunner RegisterMakeCheckpointCommand(CLI::App& app) {
  auto options = std::make_shared<MakeCheckpointOptions>();
  CLI::App* cmd = app.add_subcommand(
      "make-checkpoint",
      "Write a checkpoint of seeded random bf16 weights with a served architecture's shapes and "
      "N decoder layers (quantization tests and benchmarks at real shapes)");
  cmd->add_option("--arch", options->arch, "llama-3-70b, llama-3-8b, mixtral-8x7b or tiny")
      ->required();
  cmd->add_option("--layers", options->layers, "Decoder layers")->capture_default_str();
  cmd->add_option("--vocab", options->vocab,
                  "Vocabulary size instead of the architecture's (a smaller embedding)");
  cmd->add_flag("--random", options->random, "Seeded random weights (required)");
  cmd->add_option("--seed", options->seed, "Weight seed")->capture_default_str();
  cmd->add_option("--shard-size", options->shard_size_gb, "Shard size in GiB")
      ->capture_default_str();
  cmd->add_option("--out", options->out_dir, "Output directory")->required();
  cmd->add_flag("--force", options->force, "Replace a non-empty --out directory");
  return [options] {
    absl::Status status = RunMakeCheckpoint(*options);
    if (!status.ok()) {
      std::fprintf(stderr, "flatfleet make-checkpoint: %s\n",
                   std::string(status.message()).c_str());
      return 1;
    }
    return 0;
  };
}

}  // namespace flatfleet::tools
