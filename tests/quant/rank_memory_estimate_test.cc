// The rank memory estimate against byte counts computed here from the shapes (and, for the
// sharding, against the bytes the engine's loader reads per rank): float checkpoints on the CUDA
// (bf16) and CPU (float32) backends, header-only Llama-3-70B-shaped checkpoints in bf16 and
// W4A8, quantized checkpoints the quantizer writes from the fixtures, and malformed directories.
#include "worker/quantized/rank_memory_estimate.h"

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "common/safetensors_header.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "quant/recipes.h"
#include "quantize/eval/model_under_test.h"
#include "quantize/quantize_model.h"
#include "tests/quant/quant_test_files.h"
#include "tests/quant/synthetic_checkpoint.h"
#include "tests/quant/test_random.h"
#include "worker/model/llama_weights.h"
#include "worker/model/tensor_parallel.h"
#include "worker/quantized/quantized_checkpoint.h"

namespace flatfleet::quant {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using testing_files::FreshDir;
using testing_files::SharedDir;
using namespace testing_synthetic;

fs::path Fixture(const std::string& name) { return SharedDir() / "fixtures" / name; }

RankMemoryEstimate Estimate(const CheckpointShapes& shapes, EngineKind engine, int tp) {
  RankMemoryOptions options;
  options.engine = engine;
  options.tp_size = tp;
  absl::StatusOr<RankMemoryEstimate> estimate = EstimateRankMemory(shapes, options);
  EXPECT_TRUE(estimate.ok()) << estimate.status();
  return estimate.ok() ? *estimate : RankMemoryEstimate{};
}

// Llama-3-70B's shapes, written out.
constexpr int64_t kLayers = 80, kHidden = 8192, kInter = 28672, kVocab = 128256, kQ = 8192,
                  kKv = 1024, kHeadDim = 128;

// Integer Scale W4A8 in groups of 128 on CUDA: INT4 codes, FP16 scales, int32 multipliers,
// FP16 base scales and the float32 epilogue row.
int64_t CudaIntScaleBytes(int64_t n, int64_t k) {
  return n * k / 2 + n * (k / 128) * 2 + n * (k / 128) * 4 + n * 2 + n * 4;
}
// The same on the CPU: one int8 per code, no epilogue row.
int64_t CpuIntScaleBytes(int64_t n, int64_t k) {
  return n * k + n * (k / 128) * 2 + n * (k / 128) * 4 + n * 2;
}

TEST(RankMemoryEstimateTest, Llama70bInBf16NeedsAbout141GbOfWeightsOnOneGpu) {
  const fs::path dir = FreshDir("rank-memory", "70b-bf16");
  WriteFloatCheckpoint(dir, Llama3_70bConfig(), "BF16");
  absl::StatusOr<CheckpointShapes> shapes = ReadCheckpointShapes(dir);
  ASSERT_TRUE(shapes.ok()) << shapes.status();
  const int64_t linear_params =
      kLayers * (kHidden * (kQ + 2 * kKv) + kQ * kHidden + 3 * kHidden * kInter);
  const RankMemoryEstimate one = Estimate(*shapes, EngineKind::kCuda, 1);
  EXPECT_EQ(one.linear_bytes, 2 * linear_params);
  EXPECT_EQ(one.embedding_bytes, 2 * kVocab * kHidden);
  EXPECT_EQ(one.lm_head_bytes, 2 * kVocab * kHidden);
  EXPECT_EQ(one.norm_bytes, 4 * (2 * kLayers + 1) * kHidden + 4 * kHeadDim / 2);
  EXPECT_NEAR(one.weight_bytes() / 1e9, 141.1, 0.05);
  // 8192 positions of bf16 keys and values in every layer.
  EXPECT_EQ(one.kv_cache_tokens, 8192);
  EXPECT_EQ(one.kv_cache_bytes, 8192 * kLayers * 2 * kKv * 2);
  EXPECT_GT(one.workspace_bytes, 512 * kHidden * 4);  // at least the float32 residual stream
  EXPECT_LT(one.workspace_bytes, int64_t{1} << 30);
  EXPECT_EQ(one.overhead_bytes, kCudaRuntimeOverheadBytes);
  EXPECT_EQ(one.total_bytes(),
            one.weight_bytes() + one.kv_cache_bytes + one.workspace_bytes + one.overhead_bytes);

  // tp=2: half the heads, KV heads, intermediate rows and vocabulary per rank.
  const RankMemoryEstimate two = Estimate(*shapes, EngineKind::kCuda, 2);
  EXPECT_EQ(
      two.linear_bytes,
      2 * kLayers * (kHidden * (kQ + 2 * kKv) / 2 + kQ / 2 * kHidden + 3 * kHidden * kInter / 2));
  EXPECT_EQ(two.embedding_bytes, 2 * kVocab / 2 * kHidden);
  EXPECT_EQ(two.kv_cache_bytes, one.kv_cache_bytes / 2);
  EXPECT_EQ(two.norm_bytes, one.norm_bytes);  // replicated

  // The CPU reference holds float32 (every output count here is a multiple of the 16-row panel).
  const RankMemoryEstimate cpu = Estimate(*shapes, EngineKind::kCpu, 1);
  EXPECT_EQ(cpu.linear_bytes, 4 * linear_params);
  EXPECT_EQ(cpu.embedding_bytes + cpu.lm_head_bytes, 8 * kVocab * kHidden);
  // A CPU worker's pool is its fixed 1024 blocks of 16 positions, more than the 8192 asked for.
  EXPECT_EQ(cpu.kv_cache_tokens, 16384);
  EXPECT_EQ(cpu.kv_cache_bytes, 16384 * kLayers * 2 * kKv * 4);
  EXPECT_EQ(cpu.overhead_bytes, kCpuRuntimeOverheadBytes);
}

TEST(RankMemoryEstimateTest, Float32CheckpointIsHeldInBf16OnTheGpu) {
  const fs::path bf16 = FreshDir("rank-memory", "70b-bf16");
  const fs::path f32 = FreshDir("rank-memory", "70b-f32");
  WriteFloatCheckpoint(bf16, Llama3_70bConfig(), "BF16");
  WriteFloatCheckpoint(f32, Llama3_70bConfig(), "F32");
  absl::StatusOr<CheckpointShapes> a = ReadCheckpointShapes(bf16);
  absl::StatusOr<CheckpointShapes> b = ReadCheckpointShapes(f32);
  ASSERT_TRUE(a.ok() && b.ok());
  for (EngineKind engine : {EngineKind::kCuda, EngineKind::kCpu}) {
    EXPECT_EQ(Estimate(*a, engine, 1).total_bytes(), Estimate(*b, engine, 1).total_bytes());
  }
}

TEST(RankMemoryEstimateTest, Llama70bInW4A8FitsOneGpuAtAQuarterOfTheBf16Weights) {
  const fs::path dir = FreshDir("rank-memory", "70b-w4a8");
  WriteW4A8IntScaleCheckpoint(dir, Llama3_70bConfig());
  absl::StatusOr<CheckpointShapes> shapes = ReadCheckpointShapes(dir);
  ASSERT_TRUE(shapes.ok()) << shapes.status();
  ASSERT_TRUE(shapes->manifest.has_value());
  const int64_t per_layer =
      CudaIntScaleBytes(kQ + 2 * kKv, kHidden) + CudaIntScaleBytes(kHidden, kQ) +
      CudaIntScaleBytes(2 * kInter, kHidden) + CudaIntScaleBytes(kHidden, kInter);
  const RankMemoryEstimate one = Estimate(*shapes, EngineKind::kCuda, 1);
  EXPECT_EQ(one.linear_bytes, kLayers * per_layer);
  // The LM head stays a float layer (bf16 on the GPU), as does the embedding table.
  EXPECT_EQ(one.lm_head_bytes, 2 * kVocab * kHidden);
  EXPECT_EQ(one.embedding_bytes, 2 * kVocab * kHidden);
  EXPECT_GT(one.weight_bytes(), 35e9);
  EXPECT_LT(one.weight_bytes(), 42e9);

  // tp=2: column-parallel rows and row-parallel columns halve (groups of 128 stay whole).
  const int64_t per_layer_two =
      CudaIntScaleBytes((kQ + 2 * kKv) / 2, kHidden) + CudaIntScaleBytes(kHidden, kQ / 2) +
      CudaIntScaleBytes(kInter, kHidden) + CudaIntScaleBytes(kHidden, kInter / 2);
  EXPECT_EQ(Estimate(*shapes, EngineKind::kCuda, 2).linear_bytes, kLayers * per_layer_two);

  // The CPU integer reference keeps a byte per code and the float LM head twice in float32.
  const int64_t cpu_per_layer =
      CpuIntScaleBytes(kQ + 2 * kKv, kHidden) + CpuIntScaleBytes(kHidden, kQ) +
      CpuIntScaleBytes(2 * kInter, kHidden) + CpuIntScaleBytes(kHidden, kInter);
  const RankMemoryEstimate cpu = Estimate(*shapes, EngineKind::kCpu, 1);
  EXPECT_EQ(cpu.linear_bytes, kLayers * cpu_per_layer);
  EXPECT_EQ(cpu.lm_head_bytes, 8 * kVocab * kHidden);
  EXPECT_EQ(cpu.embedding_bytes, 4 * kVocab * kHidden);
}

// The fixtures' shapes (their README), in bf16 on disk.
TEST(RankMemoryEstimateTest, LlamaTinyFixtureInBf16AndFloat32) {
  absl::StatusOr<CheckpointShapes> shapes = ReadCheckpointShapes(Fixture("llama-tiny"));
  ASSERT_TRUE(shapes.ok()) << shapes.status();
  const int64_t layers = 4, hidden = 256, inter = 688, vocab = 512, q = 256, kv = 128;
  const int64_t linear_params = layers * (hidden * (q + 2 * kv) + q * hidden + 3 * hidden * inter);
  const RankMemoryEstimate cuda = Estimate(*shapes, EngineKind::kCuda, 1);
  EXPECT_EQ(cuda.linear_bytes, 2 * linear_params);
  EXPECT_EQ(cuda.embedding_bytes, 2 * vocab * hidden);
  EXPECT_EQ(cuda.lm_head_bytes, 2 * vocab * hidden);
  EXPECT_EQ(cuda.norm_bytes, 4 * (2 * layers + 1) * hidden + 4 * 16);
  EXPECT_EQ(cuda.kv_cache_bytes, 8192 * layers * 2 * kv * 2);
  const RankMemoryEstimate cpu = Estimate(*shapes, EngineKind::kCpu, 1);
  EXPECT_EQ(cpu.linear_bytes, 4 * linear_params);  // 512, 256, 1376: whole 16-row panels
  EXPECT_EQ(cpu.kv_cache_bytes, 16384 * layers * 2 * kv * 4);
  // tp=2 on the CPU: o_proj [256, 128] and down_proj [256, 344] column slices, qkv 256 rows,
  // gate_up 688 rows (43 panels), vocabulary rows 256.
  const RankMemoryEstimate two = Estimate(*shapes, EngineKind::kCpu, 2);
  EXPECT_EQ(two.linear_bytes,
            4 * layers * (256 * hidden + hidden * 128 + 688 * hidden + hidden * 344));
  EXPECT_EQ(two.embedding_bytes, 4 * 256 * hidden);
}

// What the estimate counts per rank is what LoadLlamaWeights reads for that rank (its
// WeightLoadStats, float32 bytes of every tensor or slice obtained), at every tp that splits.
TEST(RankMemoryEstimateTest, ShardingMatchesWhatTheLoaderReadsPerRank) {
  for (const std::string fixture : {"llama-tiny", "mixtral-tiny"}) {
    absl::StatusOr<CheckpointShapes> shapes = ReadCheckpointShapes(Fixture(fixture));
    ASSERT_TRUE(shapes.ok()) << shapes.status();
    absl::StatusOr<std::unique_ptr<WeightStore>> store = WeightStore::Open(Fixture(fixture));
    ASSERT_TRUE(store.ok()) << store.status();
    engine::CheckpointWeightSource source(*std::move(store));
    for (int tp : {1, 2, 4}) {
      const RankMemoryEstimate estimate = Estimate(*shapes, EngineKind::kCpu, tp);
      absl::StatusOr<engine::TensorParallelLayout> layout =
          engine::PlanTensorParallel(shapes->config, estimate.rank, tp);
      ASSERT_TRUE(layout.ok()) << layout.status();
      absl::StatusOr<engine::LlamaWeights> weights = engine::LoadLlamaWeights(
          shapes->config, source, kernels::cpu::DefaultCpuBackend(), *layout);
      ASSERT_TRUE(weights.ok()) << weights.status();
      const int64_t loaded =
          weights->load_stats.sharded_bytes + weights->load_stats.replicated_bytes;
      EXPECT_EQ(4 * estimate.weight_elements, loaded) << fixture << " tp=" << tp;
      EXPECT_EQ(estimate.kv_cache_bytes, 16384 * shapes->config.num_hidden_layers * 2 *
                                             layout->kv_heads.size() * shapes->config.head_dim * 4)
          << fixture << " tp=" << tp;
    }
  }
}

// The workspace is what the loaded model reserves for the continuous batcher's defaults
// (ReserveWorkspace(512 tokens, 64 logit rows)).
TEST(RankMemoryEstimateTest, WorkspaceIsWhatTheLoadedModelReserves) {
  for (const std::string fixture : {"llama-tiny", "mixtral-tiny"}) {
    absl::StatusOr<CheckpointShapes> shapes = ReadCheckpointShapes(Fixture(fixture));
    ASSERT_TRUE(shapes.ok()) << shapes.status();
    absl::StatusOr<std::unique_ptr<engine::LlamaModel>> model =
        engine::LoadLlamaModel(Fixture(fixture), kernels::cpu::DefaultCpuBackend());
    ASSERT_TRUE(model.ok()) << model.status();
    EXPECT_EQ(Estimate(*shapes, EngineKind::kCpu, 1).workspace_bytes,
              (*model)->WorkspaceBytes(512, 64))
        << fixture;
  }
}

TEST(RankMemoryEstimateTest, HeaderOnlyReadAgreesWithTheFullParser) {
  const fs::path file = Fixture("mixtral-tiny") / "model.safetensors";
  absl::StatusOr<std::vector<TensorInfo>> headers = ReadSafetensorsHeader(file);
  ASSERT_TRUE(headers.ok()) << headers.status();
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> full = SafetensorsFile::Open(file);
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_EQ(headers->size(), (*full)->tensors().size());
  for (size_t i = 0; i < headers->size(); ++i) {
    const TensorInfo& expected = (*full)->tensors()[i];  // both in data-offset order
    EXPECT_EQ((*headers)[i].name, expected.name);
    EXPECT_EQ((*headers)[i].dtype, expected.dtype);
    EXPECT_EQ((*headers)[i].shape, expected.shape);
    EXPECT_TRUE((*headers)[i].data.empty());
  }
}

// Random calibration ids (a seeded stream, printed on failure).
CalibrationData Calibration(int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab - 1));
  CalibrationData data;
  for (int s = 0; s < 2; ++s) {
    std::vector<int32_t> sequence(16);
    for (int32_t& t : sequence) t = id(rng);
    data.sequences.push_back(std::move(sequence));
  }
  data.info = {{"source", "test"}, {"seed", seed}};
  return data;
}

// llama-tiny quantized by the quantizer and written as `flatfleet quantize` writes it.
fs::path QuantizedLlamaTiny(const std::string& recipe_name) {
  const uint64_t seed = test_util::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  auto model = CheckpointModel(Fixture("llama-tiny"), /*bf16_rope=*/true);
  EXPECT_TRUE(model.ok()) << model.status();
  auto recipe = RecipeByName(recipe_name);
  EXPECT_TRUE(recipe.ok()) << recipe.status();
  if (!model.ok() || !recipe.ok()) return {};
  auto quantized = QuantizeInMemory(*model, *recipe, Calibration(model->config.vocab_size, seed));
  EXPECT_TRUE(quantized.ok()) << quantized.status();
  if (!quantized.ok()) return {};
  CheckpointWriteOptions options;
  options.source_dir = Fixture("llama-tiny");
  options.out_dir = FreshDir("rank-memory", recipe_name);
  absl::Status written = WriteQuantizedCheckpoint(*quantized->model, *quantized->backend, options);
  EXPECT_TRUE(written.ok()) << written;
  return options.out_dir;
}

TEST(RankMemoryEstimateTest, QuantizedLlamaTinyW4A8IntScale) {
  const fs::path dir = QuantizedLlamaTiny("w4a8-intscale");
  ASSERT_FALSE(dir.empty());
  absl::StatusOr<CheckpointShapes> shapes = ReadCheckpointShapes(dir);
  ASSERT_TRUE(shapes.ok()) << shapes.status();
  // down_proj's K = 688 has no group size that is a multiple of 32 and divides it: per channel,
  // which runs the float-scale GEMM (no multipliers); the other layers are in groups of 128.
  for (const StoredLinearLayer& layer : shapes->manifest->layers) {
    ASSERT_TRUE(layer.transforms.empty()) << layer.name;
    const bool down = layer.name.ends_with("down_proj");
    EXPECT_EQ(layer.weight_format.group_size, down ? 0 : 128) << layer.name;
    EXPECT_EQ(layer.gemm, down ? LinearGemmKind::kFloatScales : LinearGemmKind::kIntegerScales)
        << layer.name;
  }
  const int64_t layers = 4, hidden = 256, vocab = 512;
  // CUDA: down_proj's K padded to 704 (a multiple of 32), one FP16 scale per row.
  const int64_t cuda_down = 256 * 704 / 2 + 256 * 2 + 256 * 4;
  const int64_t cuda_layer = CudaIntScaleBytes(512, 256) + CudaIntScaleBytes(256, 256) +
                             CudaIntScaleBytes(1376, 256) + cuda_down;
  const RankMemoryEstimate cuda = Estimate(*shapes, EngineKind::kCuda, 1);
  EXPECT_EQ(cuda.linear_bytes, layers * cuda_layer);
  EXPECT_EQ(cuda.lm_head_bytes, 2 * vocab * hidden);
  EXPECT_EQ(cuda.embedding_bytes, 2 * vocab * hidden);
  const int64_t cpu_layer = CpuIntScaleBytes(512, 256) + CpuIntScaleBytes(256, 256) +
                            CpuIntScaleBytes(1376, 256) + 256 * 688 + 256 * 2;
  const RankMemoryEstimate cpu = Estimate(*shapes, EngineKind::kCpu, 1);
  EXPECT_EQ(cpu.linear_bytes, layers * cpu_layer);
  EXPECT_EQ(cpu.lm_head_bytes, 8 * vocab * hidden);
  absl::StatusOr<LoadedQuantizedModel> loaded = LoadQuantizedLlamaModel(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(cpu.workspace_bytes, loaded->model->WorkspaceBytes(512, 64));
  // tp=2 (CUDA): qkv 256 rows, o_proj columns 128 (one group), gate_up 688 rows, down_proj 344
  // columns per channel (padded to 352).
  const int64_t cuda_layer_two = CudaIntScaleBytes(256, 256) + CudaIntScaleBytes(256, 128) +
                                 CudaIntScaleBytes(688, 256) + 256 * 352 / 2 + 256 * 2 + 256 * 4;
  EXPECT_EQ(Estimate(*shapes, EngineKind::kCuda, 2).linear_bytes, layers * cuda_layer_two);
  // tp=4: o_proj's 64 columns per rank would cut its groups of 128.
  RankMemoryOptions options;
  options.tp_size = 4;
  absl::StatusOr<RankMemoryEstimate> four = EstimateRankMemory(*shapes, options);
  EXPECT_EQ(four.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(four.status().message(), AllOf(HasSubstr("o_proj"), HasSubstr("groups of 128")));
}

TEST(RankMemoryEstimateTest, QuantizedLlamaTinyW8A8HoldsAByteACode) {
  const fs::path dir = QuantizedLlamaTiny("w8a8");
  ASSERT_FALSE(dir.empty());
  absl::StatusOr<CheckpointShapes> shapes = ReadCheckpointShapes(dir);
  ASSERT_TRUE(shapes.ok()) << shapes.status();
  // Per-channel INT8: codes [n, K padded to 32], one FP16 scale and one epilogue float per row.
  auto cuda = [](int64_t n, int64_t k) { return n * ((k + 31) / 32 * 32) + n * 2 + n * 4; };
  EXPECT_EQ(Estimate(*shapes, EngineKind::kCuda, 1).linear_bytes,
            4 * (cuda(512, 256) + cuda(256, 256) + cuda(1376, 256) + cuda(256, 688)));
}

// 2- and 3-bit weights are widened to INT4 operands at load (int4_operand_widening.h): on the GPU
// they take the 4-bit layout, nibbles plus the fragment copy where the groups are multiples of 128.
TEST(RankMemoryEstimateTest, QuantizedLlamaTinyW2A8HoldsHalfAByteACodeOnTheGpu) {
  const fs::path dir = QuantizedLlamaTiny("w2a8");
  ASSERT_FALSE(dir.empty());
  absl::StatusOr<CheckpointShapes> shapes = ReadCheckpointShapes(dir);
  ASSERT_TRUE(shapes.ok()) << shapes.status();
  // Asymmetric: FP16 scales and int8 zero points per group; one epilogue float per row. The
  // 688-wide down_proj falls back to per channel (K padded to 704, no fragment copy).
  auto cuda = [](int64_t n, int64_t k, int64_t group) {
    const int64_t padded = group == 0 ? (k + 31) / 32 * 32 : k;
    const int64_t groups = group == 0 ? 1 : k / group;
    int64_t bytes = n * padded / 2 + n * groups * 2 + n * groups + n * 4;
    if ((group == 0 ? padded : group) % 128 == 0) {
      const int64_t blocks = (n + 15) / 16;
      bytes += blocks * 16 * padded / 2 + blocks * groups * 64;
    }
    return bytes;
  };
  for (const StoredLinearLayer& layer : shapes->manifest->layers) {
    EXPECT_EQ(layer.weight_format.bits, 2) << layer.name;
  }
  EXPECT_EQ(
      Estimate(*shapes, EngineKind::kCuda, 1).linear_bytes,
      4 * (cuda(512, 256, 128) + cuda(256, 256, 128) + cuda(1376, 256, 128) + cuda(256, 688, 0)));
}

TEST(RankMemoryEstimateTest, RowParallelOnlineTransformIsRefusedAtTp2) {
  const fs::path dir = QuantizedLlamaTiny("w4a4-hadamard");
  ASSERT_FALSE(dir.empty());
  absl::StatusOr<CheckpointShapes> shapes = ReadCheckpointShapes(dir);
  ASSERT_TRUE(shapes.ok()) << shapes.status();
  EXPECT_GT(Estimate(*shapes, EngineKind::kCuda, 1).linear_bytes, 0);
  RankMemoryOptions options;
  options.tp_size = 2;
  absl::StatusOr<RankMemoryEstimate> two = EstimateRankMemory(*shapes, options);
  EXPECT_EQ(two.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(two.status().message(), HasSubstr("online input transform (hadamard)"));
}

// A llama-tiny-shaped directory for the error cases.
nlohmann::json TinyConfig() {
  return {{"model_type", "llama"},    {"vocab_size", 512},      {"hidden_size", 256},
          {"intermediate_size", 688}, {"num_hidden_layers", 2}, {"num_attention_heads", 8},
          {"num_key_value_heads", 4}, {"rms_norm_eps", 1e-5},   {"tie_word_embeddings", false}};
}

std::vector<HeaderTensor> TinyTensors() {
  std::vector<HeaderTensor> tensors;
  const ModelConfig config = *ParseModelConfig(TinyConfig().dump(), "config.json");
  for (const auto& [name, shape] : engine::LlamaTensorShapes(config)) {
    tensors.push_back({name, "BF16", shape});
  }
  return tensors;
}

absl::Status ReadAndEstimate(const fs::path& dir, int tp = 1) {
  absl::StatusOr<CheckpointShapes> shapes = ReadCheckpointShapes(dir);
  if (!shapes.ok()) return shapes.status();
  RankMemoryOptions options;
  options.tp_size = tp;
  return EstimateRankMemory(*shapes, options).status();
}

TEST(RankMemoryEstimateErrorsTest, MalformedFilesNameTheFileAndField) {
  {  // config.json without hidden_size
    const fs::path dir = FreshDir("rank-memory", "no-hidden");
    nlohmann::json config = TinyConfig();
    config.erase("hidden_size");
    WriteFloatCheckpoint(dir, TinyConfig(), "BF16");
    WriteText(dir / "config.json", config.dump());
    EXPECT_THAT(ReadAndEstimate(dir).message(),
                AllOf(HasSubstr("config.json"), HasSubstr("hidden_size")));
  }
  {  // a projection of the wrong shape
    const fs::path dir = FreshDir("rank-memory", "bad-shape");
    WriteFloatCheckpoint(dir, TinyConfig(), "BF16");
    std::vector<HeaderTensor> tensors = TinyTensors();
    for (HeaderTensor& t : tensors) {
      if (t.name == "model.layers.1.self_attn.k_proj.weight") t.shape = {256, 256};
    }
    WriteHeaderOnly(dir / "model.safetensors", tensors);
    EXPECT_THAT(ReadAndEstimate(dir).message(),
                AllOf(HasSubstr("model.safetensors"),
                      HasSubstr("'model.layers.1.self_attn.k_proj.weight' is [256, 256], "
                                "config.json needs [128, 256]")));
  }
  {  // an integer tensor where a float weight belongs
    const fs::path dir = FreshDir("rank-memory", "int-weight");
    WriteFloatCheckpoint(dir, TinyConfig(), "BF16");
    std::vector<HeaderTensor> tensors = TinyTensors();
    for (HeaderTensor& t : tensors) {
      if (t.name == "model.layers.0.mlp.up_proj.weight") t.dtype = "I8";
    }
    WriteHeaderOnly(dir / "model.safetensors", tensors);
    EXPECT_THAT(ReadAndEstimate(dir).message(),
                AllOf(HasSubstr("'model.layers.0.mlp.up_proj.weight' is I8"),
                      HasSubstr("F32, F16 or BF16")));
  }
  {  // a missing LM head
    const fs::path dir = FreshDir("rank-memory", "no-lm-head");
    WriteFloatCheckpoint(dir, TinyConfig(), "BF16");
    std::vector<HeaderTensor> tensors = TinyTensors();
    std::erase_if(tensors, [](const HeaderTensor& t) { return t.name == "lm_head.weight"; });
    WriteHeaderOnly(dir / "model.safetensors", tensors);
    absl::Status status = ReadAndEstimate(dir);
    EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(status.message(), HasSubstr("tensor 'lm_head.weight'"));
  }
  {  // a header length beyond the file
    const fs::path dir = FreshDir("rank-memory", "truncated");
    WriteFloatCheckpoint(dir, TinyConfig(), "BF16");
    const uint64_t length = 1000;
    std::ofstream out(dir / "model.safetensors", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(&length), sizeof(length));
    out << "{\"a\":";
    out.close();
    EXPECT_THAT(ReadAndEstimate(dir).message(),
                AllOf(HasSubstr("model.safetensors"), HasSubstr("runs past the end")));
  }
  {  // a tensor whose offsets do not match its shape
    const fs::path dir = FreshDir("rank-memory", "bad-offsets");
    WriteFloatCheckpoint(dir, TinyConfig(), "BF16");
    const std::string text =
        R"({"model.norm.weight":{"dtype":"BF16","shape":[256],"data_offsets":[0,100]}})";
    const uint64_t length = text.size();
    std::ofstream out(dir / "model.safetensors", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(&length), sizeof(length));
    out << text;
    out.close();
    EXPECT_THAT(ReadAndEstimate(dir).message(),
                AllOf(HasSubstr("tensor 'model.norm.weight'"), HasSubstr("needs 512")));
  }
  {  // quantization.json with a bad field
    const fs::path dir = FreshDir("rank-memory", "bad-manifest");
    nlohmann::json config = TinyConfig();
    config["intermediate_size"] = 512;  // every K a multiple of the groups of 128
    WriteW4A8IntScaleCheckpoint(dir, config);
    ASSERT_TRUE(ReadAndEstimate(dir).ok());
    nlohmann::json manifest =
        nlohmann::json::parse(testing_files::ReadText(dir / "quantization.json"));
    manifest["layers"][1]["amplifier_bits"] = 99;
    WriteText(dir / "quantization.json", manifest.dump());
    EXPECT_THAT(ReadAndEstimate(dir).message(),
                AllOf(HasSubstr("quantization.json"), HasSubstr("amplifier_bits")));
  }
  {  // more ranks than attention heads
    const fs::path dir = FreshDir("rank-memory", "tp16");
    WriteFloatCheckpoint(dir, TinyConfig(), "BF16");
    EXPECT_THAT(ReadAndEstimate(dir, 16).message(), HasSubstr("8 attention heads"));
  }
}

}  // namespace
}  // namespace flatfleet::quant
