// The worker's model loader serves quantized checkpoint directories: it loads the stored layers
// on their own backend (kept alive with the model) and runs them exactly like the in-memory
// quantized model.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "quant/recipes.h"
#include "quantize/eval/model_under_test.h"
#include "quantize/quantize_model.h"
#include "tests/quant/test_random.h"
#include "worker/quantized/quantized_checkpoint.h"
#include "worker/serving/model_loader.h"

namespace flatfleet::engine {
namespace {

namespace fs = std::filesystem;

TEST(QuantizedModelLoaderTest, LoadsAQuantizedCheckpointDirectory) {
  const char* env = std::getenv("FLATFLEET_SHARED_DIR");
  const fs::path source = fs::path(env ? env : FLATFLEET_SHARED_DIR) / "fixtures" / "llama-tiny";
  auto model = quant::CheckpointModel(source, /*bf16_rope=*/false);
  ASSERT_TRUE(model.ok()) << model.status();
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE(absl::StrFormat("seed %d (FLATFLEET_TEST_SEED replays it)", seed));
  const quant::TokenBatch tokens = quant::RandomTokens(2, 9, model->config.vocab_size, seed);
  auto quantized = quant::QuantizeInMemory(*model, *quant::RecipeByName("w4a8-intscale"),
                                           quant::RandomCalibration(model->config.vocab_size));
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  auto expected = quant::AllPositionLogits(*quantized->model, tokens);
  ASSERT_TRUE(expected.ok()) << expected.status();

  const fs::path dir =
      fs::path(::testing::TempDir()) / absl::StrFormat("loader-q-%d-%d", getpid(), seed);
  fs::remove_all(dir);
  quant::CheckpointWriteOptions options;
  options.source_dir = source;
  options.out_dir = dir;
  ASSERT_TRUE(
      quant::WriteQuantizedCheckpoint(*quantized->model, *quantized->backend, options).ok());

  v1::LoadShardRequest request;
  request.set_model_path(dir.string());
  request.set_tp_size(1);
  auto loaded = CpuModelLoader()(request);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_NE(loaded->backend, nullptr);
  EXPECT_EQ(&loaded->model->backend(), loaded->backend.get());
  ASSERT_NE(loaded->tokenizer, nullptr);  // the byte tokenizer: the fixture ships none
  auto logits = quant::AllPositionLogits(*loaded->model, tokens);
  ASSERT_TRUE(logits.ok()) << logits.status();
  ASSERT_EQ(logits->size(), expected->size());
  EXPECT_EQ(std::memcmp(logits->data(), expected->data(), logits->size() * sizeof(float)), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace flatfleet::engine
