#include "quantize/eval/model_under_test.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/safetensors.h"
#include "common/status_macros.h"
#include "worker/model/llama_weights.h"

namespace flatfleet::quant {

absl::StatusOr<ModelUnderTest> CheckpointModel(const std::filesystem::path& dir, bool bf16_rope) {
  ModelUnderTest model;
  FF_ASSIGN_OR_RETURN(model.config, LoadModelConfig(dir));
  FF_ASSIGN_OR_RETURN(std::unique_ptr<WeightStore> store, WeightStore::Open(dir));
  model.name = std::filesystem::absolute(dir).lexically_normal().filename().string();
  model.weights = std::make_shared<engine::CheckpointWeightSource>(std::move(store));
  model.options.bf16_rotary_frequencies = bf16_rope;
  return model;
}

absl::StatusOr<std::unique_ptr<engine::LlamaModel>> ModelUnderTest::Build(
    kernels::Backend& backend) const {
  return engine::BuildLlamaModel(config, *weights, backend, options);
}

absl::StatusOr<KeepFloatFilter> ModelUnderTest::FloatLinears() const { return KeepFloatByName(); }

TokenBatch RandomTokens(int64_t batch, int64_t length, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab - 1));
  TokenBatch tokens{batch, length, std::vector<int32_t>(batch * length)};
  for (int32_t& t : tokens.ids) t = id(rng);
  return tokens;
}

absl::StatusOr<std::vector<float>> AllPositionLogits(const engine::LlamaModel& model,
                                                     const TokenBatch& tokens) {
  FF_ASSIGN_OR_RETURN(std::unique_ptr<engine::KvCache> cache,
                      model.CreateKvCache(tokens.length, std::max<int64_t>(1, tokens.batch)));
  std::vector<engine::SequenceChunk> chunks;
  for (int64_t b = 0; b < tokens.batch; ++b) {
    FF_ASSIGN_OR_RETURN(engine::SequenceId sequence, cache->AddSequence());
    chunks.push_back(
        {sequence, std::span<const int32_t>(tokens.ids).subspan(b * tokens.length, tokens.length),
         /*all_logits=*/true});
  }
  FF_ASSIGN_OR_RETURN(Tensor logits, model.Forward(chunks, *cache));
  return std::move(logits.vector());
}

absl::StatusOr<LogitReference> ReadLogitReference(const std::filesystem::path& path) {
  FF_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
  const TensorInfo* ids_info = file->Find("input_ids");
  const TensorInfo* logits_info = file->Find("logits");
  if (ids_info == nullptr || logits_info == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.string(), ": needs tensors 'input_ids' [B, T] and 'logits' [B, T, V]"));
  }
  FF_ASSIGN_OR_RETURN(Tensor ids, ToFloat32(*ids_info));
  FF_ASSIGN_OR_RETURN(Tensor logits, ToFloat32(*logits_info));
  if (ids.rank() != 2 || logits.rank() != 3 || logits.dim(0) != ids.dim(0) ||
      logits.dim(1) != ids.dim(1)) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": input_ids ", ids.ShapeString(),
                                                   " and logits ", logits.ShapeString(),
                                                   " do not match"));
  }
  LogitReference reference;
  reference.tokens.batch = ids.dim(0);
  reference.tokens.length = ids.dim(1);
  reference.vocab = logits.dim(2);
  for (float id : ids.span()) {
    if (id < 0 || id >= reference.vocab || id != std::floor(id)) {
      return absl::InvalidArgumentError(absl::StrCat(path.string(), ": bad token id ", id));
    }
    reference.tokens.ids.push_back(static_cast<int32_t>(id));
  }
  reference.logits = std::move(logits.vector());
  return reference;
}

}  // namespace flatfleet::quant
