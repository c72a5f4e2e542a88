// Quantization on a real pretrained model, stories260K (TinyStories Llama; hidden 64,
// intermediate 172, tied embeddings; ../shared/models): every recipe quantizes, writes and loads
// back (widths no weight group of 128 divides fall back as recorded in quantization.json), and
// the real-text accuracy table (quantize/text_accuracy.h) on a small slice of
// TinyStories' valid.txt stays within stated bands of the committed numbers. The shared model
// and text are required: without them these tests fail, they do not skip.
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "quant/recipes.h"
#include "quantize/eval/model_under_test.h"
#include "quantize/quantize_model.h"
#include "quantize/text_accuracy.h"
#include "tests/quant/quant_test_files.h"
#include "worker/quantized/quantized_checkpoint.h"
#include "worker/quantized/runnable_model.h"

namespace flatfleet::quant {
namespace {

namespace fs = std::filesystem;

using testing_files::SharedDir;
fs::path StoriesDir() { return SharedDir() / "models" / "stories260K"; }
fs::path TinyStoriesText() { return SharedDir() / "data" / "tinystories" / "valid.txt"; }

using testing_files::ReadText;

// The model, its tokenizer and the text; fails the test (never skips) when any is missing.
struct Stories {
  ModelUnderTest model;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  std::string text;
};
void LoadStories(Stories& stories) {
  ASSERT_TRUE(fs::exists(StoriesDir() / "config.json"))
      << "shared model missing: " << StoriesDir() << " (set FLATFLEET_SHARED_DIR)";
  ASSERT_TRUE(fs::exists(TinyStoriesText()))
      << "shared text missing: " << TinyStoriesText() << " (set FLATFLEET_SHARED_DIR)";
  auto model = CheckpointModel(StoriesDir(), /*bf16_rope=*/false);
  ASSERT_TRUE(model.ok()) << model.status();
  stories.model = *std::move(model);
  std::string note;
  auto tok = LoadTokenizerOrBytes(StoriesDir(), "", stories.model.config.vocab_size, &note);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_TRUE(note.empty()) << note;  // its own SentencePiece-style BPE, not bytes
  stories.tokenizer = *std::move(tok);
  stories.text = ReadText(TinyStoriesText());
  ASSERT_GT(stories.text.size(), 100000u);
}

fs::path FreshDir(const std::string& label) { return testing_files::FreshDir("stories", label); }

// Every recipe on widths 64 and 172: none divides into groups of 128, and no multiple of 32
// divides 172, so group recipes fall back to per-channel scales (w4a8-intscale then runs the
// float-scale GEMM). Each quantizes, writes, records the fallback, and loads back bit-identical.
TEST(StoriesCheckpointTest, EveryRecipeQuantizesWritesAndLoads) {
  Stories stories;
  ASSERT_NO_FATAL_FAILURE(LoadStories(stories));
  auto split = SplitCalibrationText(stories.text, 0.2);
  ASSERT_TRUE(split.ok()) << split.status();
  auto calibration = CalibrationFromText(split->calibration, *stories.tokenizer,
                                         stories.model.config.vocab_size, 256, 64);
  ASSERT_TRUE(calibration.ok()) << calibration.status();
  auto ids = stories.tokenizer->Encode(split->evaluation.substr(0, 400), false);
  ASSERT_TRUE(ids.ok());
  ASSERT_GE(ids->size(), 48u);
  const TokenBatch tokens{1, 48, std::vector<int32_t>(ids->begin(), ids->begin() + 48)};
  for (const std::string& name : ImplementedRecipeNames()) {
    SCOPED_TRACE(name);
    auto recipe = RecipeByName(name);
    ASSERT_TRUE(recipe.ok());
    auto quantized = QuantizeInMemory(stories.model, *recipe, *calibration);
    ASSERT_TRUE(quantized.ok()) << quantized.status();
    auto in_memory = AllPositionLogits(*quantized->model, tokens);
    ASSERT_TRUE(in_memory.ok()) << in_memory.status();
    CheckpointWriteOptions write;
    write.source_dir = StoriesDir();
    write.out_dir = FreshDir(name);
    ASSERT_TRUE(WriteQuantizedCheckpoint(*quantized->model, *quantized->backend, write).ok());
    auto loaded = LoadQuantizedLlamaModel(write.out_dir);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    auto reloaded = AllPositionLogits(*loaded->model, tokens);
    ASSERT_TRUE(reloaded.ok()) << reloaded.status();
    EXPECT_EQ(*reloaded, *in_memory);
    ASSERT_EQ(loaded->manifest.layers.size(), 4u * stories.model.config.num_hidden_layers);
    for (const StoredLinearLayer& layer : loaded->manifest.layers) {
      SCOPED_TRACE(layer.name);
      const int64_t columns =
          layer.transformed_features - static_cast<int64_t>(layer.outlier_channels.size());
      const WeightGroupChoice expected =
          ChooseWeightGroupSize(recipe->spec.weight.group_size, columns);
      EXPECT_EQ(layer.weight_format.group_size, expected.group_size);
      EXPECT_EQ(layer.group_size_fallback, expected.fallback);
      if (recipe->spec.weight.group_size == 128) {
        // 64, 172 and the flattened/outlier widths here: never 128-divisible.
        EXPECT_NE(layer.group_size_fallback, GroupSizeFallback::kNone);
        EXPECT_EQ(layer.requested_group_size, 128);
      }
      EXPECT_NE(layer.gemm, LinearGemmKind::kIntegerScales);  // per channel: float scales
    }
    fs::remove_all(write.out_dir);
  }
}

// The committed slice numbers (docs/ACCURACY.md, "Real model", CI slice), measured with
// kSliceOptions by this test's own code. Bands: perplexity within 0.5% and mean KL within 10%
// (relative) of these. A run on the same build reproduces them to the printed digits; the bands
// leave room for other compilers and CPUs (float summation order), and are far narrower than
// the distance between recipes' entries, so a change in what a recipe computes fails here even
// when the recipes' order holds.
struct Committed {
  double perplexity;
  double mean_kl;
};
constexpr double kPerplexityBand = 0.005;
constexpr double kKlBand = 0.10;

TextAccuracyOptions SliceOptions() {
  TextAccuracyOptions options;
  options.calibration_fraction = 0.2;
  options.calibration_tokens = 512;
  options.calibration_length = 128;
  options.window = 128;
  options.positions = 508;  // 4 windows of 128
  return options;
}

const std::map<std::string, Committed>& CommittedSlice() {
  // clang-format off
  static const auto* table = new std::map<std::string, Committed>{
      {"w8a8", {3.87881, 0.000950984}},
      {"w8a8-static", {3.9412, 0.0084012}},
      {"w4a8", {4.60744, 0.158163}},
      {"w4a8-intscale", {4.60744, 0.158163}},
      {"w4a4", {6.74661, 0.609201}},
      {"w4a4-hadamard", {5.14801, 0.323759}},
      {"w4a4-quik", {5.5918, 0.361636}},
      {"w3a8", {6.57465, 0.604539}},
      {"w2a8", {109.818, 3.42854}},
      {"w4a4-flatquant", {4.78204, 0.196078}},
      {"w3a8-abq", {7.19841, 0.53937}},
      {"w3a8-bal", {8.43491, 0.666978}},
      {"w3a8-corr", {6.07286, 0.505324}},
      {"w2a8-abq", {33.6154, 2.08603}},
      {"w2a8-bal", {52.5903, 2.58063}},
      {"w2a8-corr", {59.9423, 2.82217}},
      {"w8a8-smooth", {3.87376, 0.00103894}},
      {"w8a8-smooth-static", {3.8569, 0.0120201}},
      {"w4a8-smooth", {4.30232, 0.12831}},
      {"w8a8-hadamard-gptq", {3.87334, 0.00048245}},
      {"w4a8-gptq", {4.54727, 0.154199}},
      {"w3a8-gptq", {6.35864, 0.50432}},
      {"w4a4-flatten", {55.5597, 2.68401}},
      {"w8a8-flatten", {3.9412, 0.0084012}},
      {"w4a8-gptq-asym", {4.23851, 0.0781159}},
      {"w4a4-hadamard-gptq", {4.58758, 0.167295}},
  };
  // clang-format on
  return *table;
}
constexpr double kCommittedFloatPerplexity = 3.86431;

TEST(RealModelAccuracyTest, SliceStaysWithinBandsOfCommittedNumbers) {
  Stories stories;
  ASSERT_NO_FATAL_FAILURE(LoadStories(stories));
  auto evaluation =
      PrepareTextEvaluation(stories.model, *stories.tokenizer, stories.text, SliceOptions());
  ASSERT_TRUE(evaluation.ok()) << evaluation.status();
  EXPECT_EQ(evaluation->positions(), 508);
  const double float_ppl = std::exp(evaluation->float_mean_nll);
  std::printf("fp32 ppl %.6g\n", float_ppl);
  EXPECT_NEAR(float_ppl, kCommittedFloatPerplexity, 1e-3 * kCommittedFloatPerplexity);
  std::map<std::string, double> perplexity;
  for (const std::string& name : ImplementedRecipeNames()) {
    SCOPED_TRACE(name);
    auto recipe = RecipeByName(name);
    ASSERT_TRUE(recipe.ok());
    auto result = MeasureRecipeOnText(stories.model, *recipe, *evaluation);
    ASSERT_TRUE(result.ok()) << result.status();
    std::printf("      {\"%s\", {%.6g, %.6g}},\n", name.c_str(), result->perplexity,
                result->agreement.mean_kl);
    perplexity[name] = result->perplexity;
    auto committed = CommittedSlice().find(name);
    if (committed == CommittedSlice().end()) {
      ADD_FAILURE() << "no committed numbers for " << name;
      continue;
    }
    EXPECT_NEAR(result->perplexity, committed->second.perplexity,
                kPerplexityBand * committed->second.perplexity);
    EXPECT_NEAR(result->agreement.mean_kl, committed->second.mean_kl,
                kKlBand * committed->second.mean_kl);
  }
  ASSERT_EQ(perplexity.size(), ImplementedRecipeNames().size());
  // The goals of docs/ACCURACY.md ("Real model") that hold on the slice as on the full table:
  // W8A8 within 0.5% of float, the best W4A4 closing >= 2/3 of plain W4A4 RTN's perplexity gap,
  // w2a8-abq better than w2a8 RTN. (W4A8 with GPTQ misses its 3% on both; the doc says why.)
  EXPECT_LT(perplexity["w8a8"], 1.005 * float_ppl);
  EXPECT_LT(perplexity["w8a8-hadamard-gptq"], 1.005 * float_ppl);
  const double rtn_gap = perplexity["w4a4"] - float_ppl;
  EXPECT_LT(perplexity["w4a4-hadamard-gptq"] - float_ppl, rtn_gap / 3);
  EXPECT_LT(perplexity["w2a8-abq"], perplexity["w2a8"]);
}

}  // namespace
}  // namespace flatfleet::quant
