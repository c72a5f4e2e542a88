// Model directories for tests of what reads only shapes (the rank memory estimate, the planner):
// a config.json and safetensors files holding the header alone (data_offsets as if the data
// followed), so that a Llama-3-70B-shaped checkpoint costs a few hundred kilobytes; optionally a
// quantization.json describing W4A8 layers with Integer Scale, as `flatfleet quantize --recipe
// w4a8-intscale` writes them (docs/QUANT_FORMATS.md, section 7).
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/model_config.h"
#include "nlohmann/json.hpp"
#include "quant/quantized_checkpoint_manifest.h"
#include "quant/recipes.h"
#include "worker/model/llama_weights.h"

namespace flatfleet::quant::testing_synthetic {

struct HeaderTensor {
  std::string name;
  std::string dtype;  // safetensors spelling
  std::vector<int64_t> shape;
};

inline int64_t DtypeBytes(const std::string& dtype) {
  if (dtype == "F32" || dtype == "I32") return 4;
  if (dtype == "BF16" || dtype == "F16") return 2;
  return 1;  // U8, I8
}

// The 8-byte length and the JSON header of a safetensors file, without the data.
inline void WriteHeaderOnly(const std::filesystem::path& path,
                            const std::vector<HeaderTensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const HeaderTensor& tensor : tensors) {
    int64_t elements = 1;
    for (int64_t dim : tensor.shape) elements *= dim;
    const uint64_t bytes = static_cast<uint64_t>(elements * DtypeBytes(tensor.dtype));
    header[tensor.name] = {{"dtype", tensor.dtype},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  const std::string text = header.dump();
  const uint64_t length = text.size();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&length), sizeof(length));
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
}

// Llama-3-70B's config.json (Hugging Face meta-llama/Meta-Llama-3-70B).
inline nlohmann::json Llama3_70bConfig() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"vocab_size", 128256},
          {"hidden_size", 8192},
          {"intermediate_size", 28672},
          {"num_hidden_layers", 80},
          {"num_attention_heads", 64},
          {"num_key_value_heads", 8},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 500000.0},
          {"max_position_embeddings", 8192},
          {"tie_word_embeddings", false},
          {"bos_token_id", 128000},
          {"eos_token_id", 128001},
          {"torch_dtype", "bfloat16"}};
}

inline void WriteText(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// config.json and a header-only model.safetensors with every tensor the model reads in `dtype`.
inline ModelConfig WriteFloatCheckpoint(const std::filesystem::path& dir,
                                        const nlohmann::json& config_json,
                                        const std::string& dtype) {
  std::filesystem::create_directories(dir);
  WriteText(dir / "config.json", config_json.dump());
  const ModelConfig config = *ParseModelConfig(config_json.dump(), "config.json");
  std::vector<HeaderTensor> tensors;
  for (const auto& [name, shape] : engine::LlamaTensorShapes(config)) {
    tensors.push_back({name, dtype, shape});
  }
  WriteHeaderOnly(dir / "model.safetensors", tensors);
  return config;
}

// One W4A8 Integer Scale layer (symmetric INT4 codes in groups of 128) and its stored tensors.
inline StoredLinearLayer IntScaleLayer(const std::string& name, LayerParallelism parallel,
                                       std::vector<std::string> stacked,
                                       std::vector<int64_t> stacked_rows, int64_t in,
                                       std::vector<HeaderTensor>& tensors) {
  StoredLinearLayer layer;
  layer.name = name;
  layer.parallel = parallel;
  layer.stacked = std::move(stacked);
  layer.stacked_rows = std::move(stacked_rows);
  for (int64_t rows : layer.stacked_rows) layer.out_features += rows;
  layer.in_features = in;
  layer.transformed_features = in;
  layer.gemm = LinearGemmKind::kIntegerScales;
  layer.weight_format = QuantFormat{.bits = 4, .symmetric = true, .group_size = 128};
  layer.activation_format = QuantFormat{.bits = 8, .symmetric = true};
  layer.amplifier_bits = 10;
  const int64_t n = layer.out_features;
  tensors.push_back({StoredTensorName(name, "qweight"), "U8", {n, in / 2}});
  tensors.push_back({StoredTensorName(name, "scales"), "F16", {n, in / 128}});
  tensors.push_back({StoredTensorName(name, "scale_multipliers"), "I32", {n, in / 128}});
  tensors.push_back({StoredTensorName(name, "base_scales"), "F16", {n}});
  return layer;
}

// A w4a8-intscale checkpoint of a dense Llama `config_json` (every K a multiple of 128): the
// four stacked linears of each layer quantized, embeddings, norms and LM head in bf16.
inline ModelConfig WriteW4A8IntScaleCheckpoint(const std::filesystem::path& dir,
                                               const nlohmann::json& config_json) {
  std::filesystem::create_directories(dir);
  WriteText(dir / "config.json", config_json.dump());
  const ModelConfig config = *ParseModelConfig(config_json.dump(), "config.json");
  const int64_t hidden = config.hidden_size;
  const int64_t inter = config.intermediate_size;
  QuantizedCheckpointManifest manifest;
  manifest.recipe = *RecipeByName("w4a8-intscale");
  manifest.source_model = "/synthetic/llama";
  manifest.tensor_files = {"model.safetensors"};
  manifest.float_layers = {"lm_head"};
  std::vector<HeaderTensor> tensors;
  tensors.push_back({"model.embed_tokens.weight", "BF16", {config.vocab_size, hidden}});
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    tensors.push_back({p + "input_layernorm.weight", "BF16", {hidden}});
    tensors.push_back({p + "post_attention_layernorm.weight", "BF16", {hidden}});
    manifest.layers.push_back(
        IntScaleLayer(p + "self_attn.qkv_proj", LayerParallelism::kColumn,
                      {p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj"},
                      {config.q_size(), config.kv_size(), config.kv_size()}, hidden, tensors));
    manifest.layers.push_back(IntScaleLayer(p + "self_attn.o_proj", LayerParallelism::kRow,
                                            {p + "self_attn.o_proj"}, {hidden}, config.q_size(),
                                            tensors));
    manifest.layers.push_back(IntScaleLayer(p + "mlp.gate_up_proj", LayerParallelism::kColumn,
                                            {p + "mlp.gate_proj", p + "mlp.up_proj"},
                                            {inter, inter}, hidden, tensors));
    manifest.layers.push_back(IntScaleLayer(p + "mlp.down_proj", LayerParallelism::kRow,
                                            {p + "mlp.down_proj"}, {hidden}, inter, tensors));
  }
  tensors.push_back({"model.norm.weight", "BF16", {hidden}});
  tensors.push_back({"lm_head.weight", "BF16", {config.vocab_size, hidden}});
  WriteHeaderOnly(dir / "model.safetensors", tensors);
  WriteText(dir / std::string(kQuantizationJsonName),
            SerializeQuantizedCheckpointManifest(manifest));
  return config;
}

}  // namespace flatfleet::quant::testing_synthetic
