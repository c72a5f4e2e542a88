// Quantized checkpoints: a model quantized in memory (QuantizedCpuBackend), written, and loaded
// back through the model's loader must give bit-identical logits and greedy tokens; the loaded
// model holds no float weights of quantized layers; tensor-parallel ranks slice the stored
// tensors (TP=2 matches TP=1 within quantization noise) or refuse layers they cannot split; and
// damaged directories give errors naming the layer, tensor and file.
#include "worker/quantized/quantized_checkpoint.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/recipes.h"
#include "quant/stored_layer_slicing.h"
#include "quantize/eval/model_under_test.h"
#include "quantize/eval/recipe_accuracy.h"
#include "quantize/quantize_model.h"
#include "tests/collectives/collectives_test_support.h"
#include "tests/quant/test_random.h"
#include "worker/generate/generator.h"

namespace flatfleet::quant {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path FixtureDir(const std::string& name) {
  const char* env = std::getenv("FLATFLEET_SHARED_DIR");
  return fs::path(env ? env : FLATFLEET_SHARED_DIR) / "fixtures" / name;
}

fs::path FreshDir(const std::string& label) {
  static std::atomic<int> counter{0};
  fs::path dir = fs::path(::testing::TempDir()) /
                 absl::StrFormat("qckpt-%s-%d-%d", label, getpid(), counter.fetch_add(1));
  fs::remove_all(dir);
  return dir;
}

// Random calibration ids from a seed (the tests' FreshSeed, printed on failure).
CalibrationData FreshCalibration(int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab - 1));
  CalibrationData data;
  for (int s = 0; s < 3; ++s) {
    std::vector<int32_t> sequence(24);
    for (int32_t& t : sequence) t = id(rng);
    data.sequences.push_back(std::move(sequence));
  }
  data.info = {{"source", "test"}, {"seed", seed}};
  return data;
}

engine::ModelOptions FixtureOptions() {
  engine::ModelOptions options;
  options.bf16_rotary_frequencies = true;  // how the fixture references were made
  return options;
}

std::vector<int32_t> Greedy(const engine::LlamaModel& model, const std::vector<int32_t>& prompt) {
  engine::GenerationRequest request;
  request.prompt = prompt;
  request.params.max_tokens = 8;
  request.params.ignore_eos = true;
  auto generated = engine::Generator(model, nullptr).Generate({&request, 1});
  EXPECT_TRUE(generated.ok()) << generated.status();
  return generated.ok() ? (*generated)[0].tokens : std::vector<int32_t>{};
}

// A checkpoint written from an in-memory quantized model, with that model's results.
struct Written {
  fs::path dir;
  TokenBatch tokens;
  std::vector<float> in_memory_logits;
  std::vector<float> float_logits;
  std::vector<int32_t> in_memory_greedy;
};

Written QuantizeAndWrite(const std::string& fixture, const std::string& recipe_name,
                         uint64_t seed) {
  Written written;
  auto model = CheckpointModel(FixtureDir(fixture), /*bf16_rope=*/true);
  EXPECT_TRUE(model.ok()) << model.status();
  auto recipe = RecipeByName(recipe_name);
  EXPECT_TRUE(recipe.ok()) << recipe.status();
  auto reference = ReadLogitReference(FixtureDir(fixture) / "reference.safetensors");
  EXPECT_TRUE(reference.ok()) << reference.status();
  if (!model.ok() || !recipe.ok() || !reference.ok()) return written;
  written.tokens = reference->tokens;
  written.float_logits = reference->logits;
  auto quantized =
      QuantizeInMemory(*model, *recipe, FreshCalibration(model->config.vocab_size, seed));
  EXPECT_TRUE(quantized.ok()) << quantized.status();
  if (!quantized.ok()) return written;
  auto logits = AllPositionLogits(*quantized->model, written.tokens);
  EXPECT_TRUE(logits.ok()) << logits.status();
  if (logits.ok()) written.in_memory_logits = *std::move(logits);
  written.in_memory_greedy =
      Greedy(*quantized->model, {written.tokens.ids.begin(), written.tokens.ids.begin() + 5});
  written.dir = FreshDir(fixture + "-" + recipe_name);
  CheckpointWriteOptions options;
  options.source_dir = FixtureDir(fixture);
  options.out_dir = written.dir;
  int64_t reported = 0;
  options.progress = [&](const QuantizeProgress& progress) {
    EXPECT_EQ(progress.index, ++reported);
    EXPECT_LE(progress.index, progress.total);
  };
  absl::Status status = WriteQuantizedCheckpoint(*quantized->model, *quantized->backend, options);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(reported, static_cast<int64_t>(quantized->model->linears().size()));
  return written;
}

bool BitIdentical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

double RelativeError(const std::vector<float>& got, const std::vector<float>& expected) {
  double diff = 0.0;
  double norm = 0.0;
  for (size_t i = 0; i < expected.size(); ++i) {
    diff +=
        (static_cast<double>(got[i]) - expected[i]) * (static_cast<double>(got[i]) - expected[i]);
    norm += static_cast<double>(expected[i]) * expected[i];
  }
  return std::sqrt(diff / norm);
}

struct RoundTripCase {
  std::string fixture;
  std::string recipe;
};

void PrintTo(const RoundTripCase& c, std::ostream* out) { *out << c.fixture << " " << c.recipe; }

class QuantizedCheckpointRoundTripTest : public ::testing::TestWithParam<RoundTripCase> {};

TEST_P(QuantizedCheckpointRoundTripTest, LoadedModelIsBitIdenticalToInMemory) {
  const RoundTripCase& c = GetParam();
  const uint64_t seed = test_util::FreshSeed();
  SCOPED_TRACE(absl::StrFormat("calibration seed %d (FLATFLEET_TEST_SEED replays it)", seed));
  const Written written = QuantizeAndWrite(c.fixture, c.recipe, seed);
  ASSERT_FALSE(written.in_memory_logits.empty());
  // The quantized model is not the float one (the comparison below is not vacuous).
  EXPECT_GT(RelativeError(written.in_memory_logits, written.float_logits), 1e-4);

  auto loaded = LoadQuantizedLlamaModel(written.dir, FixtureOptions());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->manifest.recipe.name, c.recipe);
  auto logits = AllPositionLogits(*loaded->model, written.tokens);
  ASSERT_TRUE(logits.ok()) << logits.status();
  EXPECT_TRUE(BitIdentical(*logits, written.in_memory_logits))
      << "relative difference " << RelativeError(*logits, written.in_memory_logits);
  EXPECT_EQ(Greedy(*loaded->model, {written.tokens.ids.begin(), written.tokens.ids.begin() + 5}),
            written.in_memory_greedy);

  // Every quantized layer came from stored tensors, and no float weight of one is stored.
  int64_t stored = 0;
  for (const engine::NamedLinear& linear : loaded->model->linears()) {
    const auto* handle = dynamic_cast<const QuantizedCpuLinearWeight*>(linear.handle);
    ASSERT_NE(handle, nullptr);
    stored += handle->stored() ? 1 : 0;
    EXPECT_NE(handle->stored(), handle->kept_float()) << linear.request.name;
  }
  EXPECT_EQ(stored, static_cast<int64_t>(loaded->manifest.layers.size()));
  auto store = WeightStore::Open(written.dir / "model.safetensors");
  ASSERT_TRUE(store.ok()) << store.status();
  for (const std::string& name : (*store)->TensorNames()) {
    EXPECT_EQ(name.find("q_proj.weight"), std::string::npos) << name;
    EXPECT_EQ(name.find("down_proj.weight"), std::string::npos) << name;
    EXPECT_EQ(name.find("w2.weight"), std::string::npos) << name;
  }
  // Packed codes: ceil(K * bits / 8) bytes per row.
  const StoredLinearLayer& first = loaded->manifest.layers.front();
  const TensorInfo* qweight = (*store)->Find(first.name + ".qweight");
  ASSERT_NE(qweight, nullptr);
  const int64_t k =
      first.transformed_features - static_cast<int64_t>(first.outlier_channels.size());
  EXPECT_EQ(qweight->shape,
            (std::vector<int64_t>{first.out_features, (k * first.weight_format.bits + 7) / 8}));
  EXPECT_TRUE(fs::exists(written.dir / "config.json"));
  fs::remove_all(written.dir);
}

std::string CaseName(const ::testing::TestParamInfo<RoundTripCase>& info) {
  std::string name = info.param.fixture + "_" + info.param.recipe;
  for (char& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  return name;
}

// Every implemented recipe on llama-tiny (a recipe whose state the checkpoint forgets fails
// here), and the main kinds again on mixtral-tiny (experts).
std::vector<RoundTripCase> RoundTripCases() {
  std::vector<RoundTripCase> cases;
  for (const std::string& recipe : ImplementedRecipeNames())
    cases.push_back({"llama-tiny", recipe});
  for (const char* recipe : {"w8a8", "w4a8-intscale", "w4a4-hadamard", "w4a4-quik", "w3a8",
                             "w8a8-static", "w8a8-smooth", "w8a8-flatten"}) {
    cases.push_back({"mixtral-tiny", recipe});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, QuantizedCheckpointRoundTripTest,
                         ::testing::ValuesIn(RoundTripCases()), CaseName);

// Tensor parallelism: each rank slices the stored layers (column-parallel rows, row-parallel
// columns at group boundaries); the slices hold exactly the stored values. Stated tolerances
// for TP=2 against TP=1 (the in-memory model):
//   * static activation scales (w8a8-static): every rank quantizes its columns with the same
//     calibrated scale, so only the float order of the all-reduce differs, until a value that
//     order moved crosses an INT8 rounding boundary of a later layer and flips a code. Measured
//     over calibration seeds 1..40: llama-tiny 37 seeds <= 1.9e-7 relative logits error, 3 seeds
//     (1, 17, 37) flip codes: 5.0e-3..9.8e-3 with top-1 still 1.0 (seed 37 changes a greedy
//     token: near-ties); mixtral-tiny <= 1.4e-7 for all 40. So a fresh seed is bounded like the
//     dynamic recipes (5%, top-1 >= 0.9, no greedy comparison), and the float-order-only claim
//     (<= 1e-5, equal greedy tokens) is asserted on fixed seeds that flip nothing (seed 2);
//   * dynamic per-token activations: a row-parallel rank quantizes its own half of each token
//     with its own scale (finer than TP=1), a difference of the size of the quantization noise
//     itself: relative logits error <= 5% and top-1 agreement >= 90%; greedy tokens equal on
//     mixtral-tiny. llama-tiny's random logits are near-ties (w4a8 already flips 40% of its
//     top-1 against float, docs/ACCURACY.md), so its greedy continuation is not compared there.
struct TensorParallelCase {
  std::string fixture;
  std::string recipe;
  double max_relative_error;
  double min_top1;
  bool greedy_equal;
  uint64_t fixed_seed = 0;  // 0: a fresh seed (FreshSeed)
};

void PrintTo(const TensorParallelCase& c, std::ostream* out) {
  *out << c.fixture << " " << c.recipe;
  if (c.fixed_seed != 0) *out << " seed " << c.fixed_seed;
}

class QuantizedCheckpointTensorParallelTest : public ::testing::TestWithParam<TensorParallelCase> {
};

TEST_P(QuantizedCheckpointTensorParallelTest, TwoRanksMatchOne) {
  const TensorParallelCase& c = GetParam();
  const uint64_t seed = c.fixed_seed != 0 ? c.fixed_seed : test_util::FreshSeed();
  SCOPED_TRACE(absl::StrFormat("calibration seed %d (FLATFLEET_TEST_SEED replays it)", seed));
  const Written written = QuantizeAndWrite(c.fixture, c.recipe, seed);
  ASSERT_FALSE(written.in_memory_logits.empty());
  std::vector<std::vector<float>> logits(2);
  std::vector<std::vector<int32_t>> greedy(2);
  collectives::testing::RunRanksAsThreads(2, [&](collectives::Communicator& communicator) {
    engine::ModelOptions options = FixtureOptions();
    options.tensor_parallel.rank = communicator.rank();
    options.tensor_parallel.size = 2;
    options.tensor_parallel.communicator = &communicator;
    auto loaded = LoadQuantizedLlamaModel(written.dir, options);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    auto rank_logits = AllPositionLogits(*loaded->model, written.tokens);
    ASSERT_TRUE(rank_logits.ok()) << rank_logits.status();
    logits[communicator.rank()] = *std::move(rank_logits);
    greedy[communicator.rank()] =
        Greedy(*loaded->model, {written.tokens.ids.begin(), written.tokens.ids.begin() + 5});
  });
  ASSERT_EQ(logits[0].size(), written.in_memory_logits.size());
  EXPECT_TRUE(BitIdentical(logits[0], logits[1]));
  EXPECT_EQ(greedy[0], greedy[1]);
  const double relative = RelativeError(logits[0], written.in_memory_logits);
  auto agreement = CompareLogits(written.in_memory_logits, logits[0], 512);
  ASSERT_TRUE(agreement.ok()) << agreement.status();
  std::printf(
      "[ TP       ] %s %s: TP=2 vs TP=1 relative logits error %.3e, top-1 %.4f, greedy %s\n",
      c.fixture.c_str(), c.recipe.c_str(), relative, agreement->top1_agreement,
      greedy[0] == written.in_memory_greedy ? "equal" : "differs");
  EXPECT_LE(relative, c.max_relative_error);
  EXPECT_GE(agreement->top1_agreement, c.min_top1);
  if (c.greedy_equal) EXPECT_EQ(greedy[0], written.in_memory_greedy);
  fs::remove_all(written.dir);
}

std::string TensorParallelCaseName(const ::testing::TestParamInfo<TensorParallelCase>& info) {
  std::string name = info.param.fixture + "_" + info.param.recipe;
  if (info.param.fixed_seed != 0) name += "_seed" + std::to_string(info.param.fixed_seed);
  for (char& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, QuantizedCheckpointTensorParallelTest,
    ::testing::Values(TensorParallelCase{"llama-tiny", "w8a8-static", 1e-5, 1.0, true, 2},
                      TensorParallelCase{"mixtral-tiny", "w8a8-static", 1e-5, 1.0, true, 2},
                      TensorParallelCase{"llama-tiny", "w8a8-static", 0.05, 0.9, false},
                      TensorParallelCase{"mixtral-tiny", "w8a8-static", 0.05, 0.9, false},
                      TensorParallelCase{"llama-tiny", "w8a8", 0.05, 0.9, false},
                      TensorParallelCase{"llama-tiny", "w4a8-intscale", 0.05, 0.9, false},
                      TensorParallelCase{"mixtral-tiny", "w8a8", 0.05, 0.9, true},
                      TensorParallelCase{"mixtral-tiny", "w3a8", 0.05, 0.9, true},
                      // Balanced codes plus the output correction, whose shift one rank adds.
                      TensorParallelCase{"mixtral-tiny", "w2a8-abq", 0.05, 0.9, false}),
    TensorParallelCaseName);

// A Hadamard rotation of a row-parallel layer's input mixes columns of both ranks: refused.
TEST(QuantizedCheckpointTensorParallelRefusalTest, RowParallelHadamardIsRefused) {
  const Written written = QuantizeAndWrite("llama-tiny", "w4a4-hadamard", 7);
  ASSERT_FALSE(written.dir.empty());
  collectives::testing::RunRanksAsThreads(2, [&](collectives::Communicator& communicator) {
    engine::ModelOptions options = FixtureOptions();
    options.tensor_parallel.rank = communicator.rank();
    options.tensor_parallel.size = 2;
    options.tensor_parallel.communicator = &communicator;
    auto loaded = LoadQuantizedLlamaModel(written.dir, options);
    ASSERT_FALSE(loaded.ok());
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(loaded.status().message(), HasSubstr("model.layers.0.self_attn.o_proj"));
    EXPECT_THAT(loaded.status().message(), HasSubstr("hadamard"));
  });
  fs::remove_all(written.dir);
}

// ---- Slicing -----------------------------------------------------------------------------

// The layer's weight as the kernels see it, [out, K]: dequantized codes, QUIK's FP16 outlier
// columns in place, and for integer scales the effective scale base * mult * 2^-a.
std::vector<double> EffectiveWeight(const QuantizedLinearParts& parts) {
  std::vector<double> out;
  if (parts.gemm_kind == LinearGemmKind::kQuik) {
    const QuikWeight& quik = parts.quik;
    const std::vector<float> base = quik.base.Dequantize();
    for (int64_t n = 0; n < quik.n; ++n) {
      int64_t rest = 0;
      size_t outlier = 0;
      for (int64_t k = 0; k < quik.k; ++k) {
        if (outlier < quik.outlier_channels.size() && quik.outlier_channels[outlier] == k) {
          out.push_back(
              HalfToFloat(quik.outlier_weights[n * quik.outlier_channels.size() + outlier++]));
        } else {
          out.push_back(base[n * quik.base.cols + rest++]);
        }
      }
    }
    return out;
  }
  if (parts.gemm_kind == LinearGemmKind::kIntegerScales) {
    const IntegerScaledWeight& scaled = parts.integer_scaled;
    const QuantizedMatrix& w = scaled.weight;
    for (int64_t n = 0; n < w.rows; ++n) {
      for (int64_t k = 0; k < w.cols; ++k) {
        const int64_t g = k / w.GroupSize();
        out.push_back(static_cast<double>(w.Centered(n, k)) * HalfToFloat(scaled.base_scales[n]) *
                      scaled.multipliers[n * w.GroupsPerRow() + g] *
                      std::ldexp(1.0, -scaled.amplifier_bits));
      }
    }
    return out;
  }
  const std::vector<float> dequantized = parts.weight.Dequantize();
  return {dequantized.begin(), dequantized.end()};
}

TEST(StoredLayerSlicingTest, SlicesHoldExactlyTheWholeLayersValues) {
  const uint64_t seed = test_util::FreshSeed();
  SCOPED_TRACE(absl::StrFormat("seed %d (FLATFLEET_TEST_SEED replays it)", seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  constexpr int64_t kOut = 24;
  constexpr int64_t kIn = 64;
  Tensor weight({kOut, kIn});
  Tensor bias({kOut});
  for (float& v : weight.span()) v = normal(rng);
  for (float& v : bias.span()) v = normal(rng);
  for (const std::string recipe_name : {"w4a4-quik", "w3a8", "w4a8-intscale", "w8a8"}) {
    SCOPED_TRACE(recipe_name);
    QuantRecipe recipe = *RecipeByName(recipe_name);
    if (recipe.spec.weight.group_size > 0) recipe.spec.weight.group_size = 16;
    auto layer = QuantizedLinear::Create(weight, &bias, recipe, nullptr);
    ASSERT_TRUE(layer.ok()) << layer.status();
    const QuantizedLinearParts parts = layer->ToParts();
    const std::vector<double> whole = EffectiveWeight(parts);
    // Row-parallel halves: columns [0, 32) and [32, 64).
    for (auto [begin, end] : {std::pair<int64_t, int64_t>{0, 32}, {32, 64}}) {
      auto half = SliceInputColumns("test", parts, begin, end);
      ASSERT_TRUE(half.ok()) << half.status();
      ASSERT_TRUE(QuantizedLinear::FromParts(*half).ok());
      const std::vector<double> got = EffectiveWeight(*half);
      ASSERT_EQ(got.size(), static_cast<size_t>(kOut * (end - begin)));
      for (int64_t n = 0; n < kOut; ++n) {
        for (int64_t k = begin; k < end; ++k) {
          ASSERT_EQ(got[n * (end - begin) + k - begin], whole[n * kIn + k]) << n << "," << k;
        }
      }
      EXPECT_EQ(half->bias, parts.bias);
    }
    // Column-parallel: two row ranges stacked.
    auto rows = SliceOutputRows("test", parts, {{2, 7}, {12, 24}});
    ASSERT_TRUE(rows.ok()) << rows.status();
    ASSERT_TRUE(QuantizedLinear::FromParts(*rows).ok());
    const std::vector<double> got = EffectiveWeight(*rows);
    std::vector<double> expected(whole.begin() + 2 * kIn, whole.begin() + 7 * kIn);
    expected.insert(expected.end(), whole.begin() + 12 * kIn, whole.end());
    EXPECT_EQ(got, expected);
    ASSERT_EQ(rows->bias.size(), 17u);
    EXPECT_EQ(rows->bias[5], parts.bias[12]);
  }
  // A cut inside a group of 16 is refused, naming the layer.
  QuantRecipe grouped = *RecipeByName("w3a8");
  grouped.spec.weight.group_size = 16;
  auto layer = QuantizedLinear::Create(weight, nullptr, grouped, nullptr);
  ASSERT_TRUE(layer.ok()) << layer.status();
  auto misaligned = SliceInputColumns("model.layers.9.mlp.down_proj", layer->ToParts(), 0, 24);
  EXPECT_EQ(misaligned.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(misaligned.status().message(), HasSubstr("model.layers.9.mlp.down_proj"));
  EXPECT_THAT(misaligned.status().message(), HasSubstr("groups of 16"));
}

// ---- Damaged checkpoints -------------------------------------------------------------------

// One checkpoint (llama-tiny, w3a8: asymmetric groups with zero points) shared by the tests below;
// each works on its own copy.
const fs::path& SharedCheckpoint() {
  static const fs::path* dir = [] {
    const Written written = QuantizeAndWrite("llama-tiny", "w3a8", 11);
    return new fs::path(written.dir);
  }();
  return *dir;
}

fs::path CopyOfShared() {
  fs::path copy = FreshDir("copy");
  fs::copy(SharedCheckpoint(), copy, fs::copy_options::recursive);
  return copy;
}

// Rewrites model.safetensors of `dir` through `edit`.
void EditTensors(const fs::path& dir,
                 const std::function<void(std::vector<TensorToWrite>&)>& edit) {
  auto file = SafetensorsFile::Open(dir / "model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  std::vector<TensorToWrite> tensors;
  for (const TensorInfo& info : (*file)->tensors()) {
    tensors.push_back({info.name, info.dtype, info.shape,
                       std::vector<std::byte>(info.data.begin(), info.data.end())});
  }
  file->reset();
  edit(tensors);
  ASSERT_TRUE(WriteSafetensors(dir / "model.safetensors", tensors).ok());
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteText(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

TEST(QuantizedCheckpointErrorsTest, MissingTensorNamesTensorAndFile) {
  const fs::path dir = CopyOfShared();
  EditTensors(dir, [](std::vector<TensorToWrite>& tensors) {
    std::erase_if(tensors, [](const TensorToWrite& t) {
      return t.name == "model.layers.1.mlp.down_proj.scales";
    });
  });
  auto loaded = LoadQuantizedLlamaModel(dir, FixtureOptions());
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.status().message(), HasSubstr("model.layers.1.mlp.down_proj.scales"));
  EXPECT_THAT(loaded.status().message(), HasSubstr((dir / "model.safetensors").string()));
  fs::remove_all(dir);
}

TEST(QuantizedCheckpointErrorsTest, WrongDtypeOrShapeNamesTensorAndFile) {
  const fs::path dir = CopyOfShared();
  EditTensors(dir, [](std::vector<TensorToWrite>& tensors) {
    for (TensorToWrite& t : tensors) {
      if (t.name == "model.layers.0.self_attn.qkv_proj.zeros") t.dtype = DType::kU8;
    }
  });
  auto loaded = LoadQuantizedLlamaModel(dir, FixtureOptions());
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.status().message(), HasSubstr("model.layers.0.self_attn.qkv_proj.zeros"));
  EXPECT_THAT(loaded.status().message(), HasSubstr("expected I8"));
  EXPECT_THAT(loaded.status().message(), HasSubstr("model.safetensors"));

  EditTensors(dir, [](std::vector<TensorToWrite>& tensors) {
    for (TensorToWrite& t : tensors) {
      if (t.name == "model.layers.0.self_attn.qkv_proj.zeros") t.dtype = DType::kI8;
      if (t.name == "model.layers.2.mlp.gate_up_proj.qweight") {
        t.shape = {t.shape[1], t.shape[0]};
      }
    }
  });
  loaded = LoadQuantizedLlamaModel(dir, FixtureOptions());
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.status().message(), HasSubstr("model.layers.2.mlp.gate_up_proj.qweight"));
  fs::remove_all(dir);
}

TEST(QuantizedCheckpointErrorsTest, OutOfRangeZeroPointIsRejectedWithTheLayer) {
  const fs::path dir = CopyOfShared();
  const uint64_t seed = test_util::FreshSeed();
  SCOPED_TRACE(absl::StrFormat("seed %d (FLATFLEET_TEST_SEED replays it)", seed));
  std::mt19937_64 rng(seed);
  EditTensors(dir, [&](std::vector<TensorToWrite>& tensors) {
    for (TensorToWrite& t : tensors) {
      if (t.name == "model.layers.3.self_attn.o_proj.zeros") {
        // 3-bit zero points live in [-4, 3]; 100 is outside.
        t.bytes[rng() % t.bytes.size()] = static_cast<std::byte>(100);
      }
    }
  });
  auto loaded = LoadQuantizedLlamaModel(dir, FixtureOptions());
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.status().message(), HasSubstr("model.layers.3.self_attn.o_proj"));
  fs::remove_all(dir);
}

TEST(QuantizedCheckpointErrorsTest, BadManifestNamesTheField) {
  const fs::path dir = CopyOfShared();
  const std::string original = ReadText(dir / "quantization.json");
  std::string text = original;
  const std::string needle = "\"bits\": 3";
  ASSERT_NE(text.find(needle), std::string::npos);
  text.replace(text.find(needle), needle.size(), "\"bits\": 12");
  WriteText(dir / "quantization.json", text);
  auto loaded = LoadQuantizedLlamaModel(dir, FixtureOptions());
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.status().message(), HasSubstr("layers[0].weight.bits"));

  // A layer the model needs but the manifest does not list.
  auto manifest = ParseQuantizedCheckpointManifest(original);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  manifest->layers.erase(manifest->layers.begin() + 1);
  WriteText(dir / "quantization.json", SerializeQuantizedCheckpointManifest(*manifest));
  loaded = LoadQuantizedLlamaModel(dir, FixtureOptions());
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.status().message(), HasSubstr("model.layers.0.self_attn.o_proj"));
  EXPECT_THAT(loaded.status().message(), HasSubstr("quantization.json"));

  // A layer the model does not have (a checkpoint of another config).
  manifest = ParseQuantizedCheckpointManifest(original);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  StoredLinearLayer extra = manifest->layers.front();
  extra.name = "model.layers.99.self_attn.qkv_proj";
  manifest->layers.push_back(extra);
  WriteText(dir / "quantization.json", SerializeQuantizedCheckpointManifest(*manifest));
  loaded = LoadQuantizedLlamaModel(dir, FixtureOptions());
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.status().message(), HasSubstr("model.layers.99.self_attn.qkv_proj"));
  fs::remove_all(dir);
}

TEST(QuantizedCheckpointWriteTest, RefusesNonEmptyOutputUnlessForcedAndLeavesNoTemporaries) {
  const fs::path out = FreshDir("occupied");
  fs::create_directories(out);
  WriteText(out / "keep.txt", "precious");
  auto model = CheckpointModel(FixtureDir("llama-tiny"), true);
  ASSERT_TRUE(model.ok()) << model.status();
  auto quantized = QuantizeInMemory(*model, *RecipeByName("w8a8"),
                                    FreshCalibration(model->config.vocab_size, 5));
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  CheckpointWriteOptions options;
  options.source_dir = FixtureDir("llama-tiny");
  options.out_dir = out;
  absl::Status refused = WriteQuantizedCheckpoint(*quantized->model, *quantized->backend, options);
  EXPECT_EQ(refused.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(refused.message(), HasSubstr("--force"));
  EXPECT_EQ(ReadText(out / "keep.txt"), "precious");

  options.force = true;
  ASSERT_TRUE(WriteQuantizedCheckpoint(*quantized->model, *quantized->backend, options).ok());
  EXPECT_FALSE(fs::exists(out / "keep.txt"));
  EXPECT_TRUE(IsQuantizedCheckpoint(out));
  for (const auto& entry : fs::directory_iterator(out.parent_path())) {
    EXPECT_EQ(entry.path().filename().string().find("." + out.filename().string() + "."),
              std::string::npos)
        << "left behind: " << entry.path();
  }
  fs::remove_all(out);
}

TEST(QuantizedCheckpointManifestTest, RoundTripsAndRejectsUnknownFields) {
  auto parsed =
      ParseQuantizedCheckpointManifest(ReadText(SharedCheckpoint() / "quantization.json"));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->recipe.name, "w3a8");
  EXPECT_TRUE(parsed->recipe.weight_clip_search);
  EXPECT_FALSE(parsed->layers.empty());
  EXPECT_EQ(parsed->float_layers, std::vector<std::string>{"lm_head"});
  const std::string serialized = SerializeQuantizedCheckpointManifest(*parsed);
  auto again = ParseQuantizedCheckpointManifest(serialized);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(SerializeQuantizedCheckpointManifest(*again), serialized);

  auto unknown = ParseQuantizedCheckpointManifest(
      R"({"format": "flatfleet-quantized", "format_version": 1, "colour": 1})");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.status().message(), HasSubstr("colour"));
  auto newer =
      ParseQuantizedCheckpointManifest(R"({"format": "flatfleet-quantized", "format_version": 2})");
  ASSERT_FALSE(newer.ok());
  EXPECT_THAT(newer.status().message(), HasSubstr("format_version"));
}

// A recorded group-size fallback must be the one ChooseWeightGroupSize gives for the request and
// the layer's columns (a contradicting pair is a corrupt file), and round-trips.
TEST(QuantizedCheckpointManifestTest, GroupSizeFallbackIsCheckedAndRoundTrips) {
  const fs::path corpus =
      fs::path(FLATFLEET_SOURCE_DIR) / "tests" / "fuzz" / "corpus" / "quantization_json_fuzz";
  auto parsed = ParseQuantizedCheckpointManifest(ReadText(corpus / "valid_group_fallback.json"));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->layers.size(), 2u);
  EXPECT_EQ(parsed->layers[0].group_size_fallback, GroupSizeFallback::kPerChannel);
  EXPECT_EQ(parsed->layers[0].requested_group_size, 128);
  EXPECT_EQ(parsed->layers[1].group_size_fallback, GroupSizeFallback::kLargestGpuDivisor);
  EXPECT_EQ(parsed->layers[1].weight_format.group_size, 64);
  auto again = ParseQuantizedCheckpointManifest(SerializeQuantizedCheckpointManifest(*parsed));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->layers[1].group_size_fallback, GroupSizeFallback::kLargestGpuDivisor);
  EXPECT_EQ(again->layers[1].requested_group_size, 128);

  auto contradicting =
      ParseQuantizedCheckpointManifest(ReadText(corpus / "bad_group_fallback.json"));
  ASSERT_FALSE(contradicting.ok());
  EXPECT_THAT(contradicting.status().message(),
              HasSubstr("layers[1].group_size_fallback.rule: requested 128 over 320 columns gives "
                        "group size 64 (largest_gpu_divisor), not 80"));
}

// The fuzz seeds double as parser cases: valid_* parse, bad_* are refused with a message that
// names quantization.json.
TEST(QuantizedCheckpointManifestTest, FuzzSeedsParseAsNamed) {
  const fs::path corpus =
      fs::path(FLATFLEET_SOURCE_DIR) / "tests" / "fuzz" / "corpus" / "quantization_json_fuzz";
  int files = 0;
  for (const auto& entry : fs::directory_iterator(corpus)) {
    const std::string name = entry.path().filename().string();
    SCOPED_TRACE(name);
    auto parsed = ParseQuantizedCheckpointManifest(ReadText(entry.path()));
    if (name.starts_with("valid_")) {
      EXPECT_TRUE(parsed.ok()) << parsed.status();
    } else {
      ASSERT_FALSE(parsed.ok());
      EXPECT_THAT(parsed.status().message(), HasSubstr("quantization.json"));
    }
    ++files;
  }
  EXPECT_GE(files, 10);
}

}  // namespace
}  // namespace flatfleet::quant
