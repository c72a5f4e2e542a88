// `flatfleet quantize`: quantizes a Hugging Face checkpoint with a recipe, calibrated on a text
// file, and writes a quantized checkpoint directory (docs/QUANT_FORMATS.md, "Quantized
// checkpoint"). Progress goes to stderr; the directory appears atomically.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "common/strict_json.h"
#include "quant/checkpoint/quantize_model.h"
#include "quant/checkpoint/quantized_checkpoint.h"
#include "quant/checkpoint/runnable_model.h"
#include "quant/eval/model_under_test.h"
#include "quant/quantized_checkpoint_manifest.h"
#include "quant/recipes.h"
#include "tools/commands.h"

namespace flatfleet::tools {
namespace {

struct QuantizeOptions {
  std::string model_dir;
  std::string recipe;
  std::string calib_file;
  int64_t calib_tokens = 2048;
  int64_t calib_length = 128;
  std::string out_dir;
  std::string tokenizer_path;
  bool force = false;
  bool bf16_rope = false;
};

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrFormat("cannot read %s", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A recipe name, or a JSON file ({"name", "spec", "weight_clip_search"} or a bare QuantSpec).
absl::StatusOr<quant::QuantRecipe> ResolveRecipe(const std::string& recipe) {
  if (!recipe.ends_with(".json")) return quant::RecipeByName(recipe);
  FF_ASSIGN_OR_RETURN(std::string text, ReadFile(recipe));
  FF_ASSIGN_OR_RETURN(nlohmann::json json, ParseStrictJson(text, recipe));
  return quant::RecipeFromJson(json, std::filesystem::path(recipe).stem().string(), recipe);
}

std::string Seconds(double seconds) { return absl::StrFormat("%.1fs", seconds); }

absl::Status RunQuantize(const QuantizeOptions& options) {
  // Refuse an occupied output before any work.
  FF_RETURN_IF_ERROR(quant::CheckOutputDirectory(options.out_dir, options.force));
  FF_ASSIGN_OR_RETURN(quant::QuantRecipe recipe, ResolveRecipe(options.recipe));
  FF_ASSIGN_OR_RETURN(quant::ModelUnderTest model,
                      quant::CheckpointModel(options.model_dir, options.bf16_rope));
  std::fprintf(stderr, "quantize: %s with recipe %s -> %s\n", options.model_dir.c_str(),
               recipe.name.c_str(), options.out_dir.c_str());

  quant::CalibrationData calibration;
  if (options.calib_file.empty()) {
    calibration = quant::RandomCalibration(model.config.vocab_size);
    std::fprintf(stderr, "quantize: no --calib text; calibrating on %lld seeded random token ids\n",
                 static_cast<long long>(calibration.tokens()));
  } else {
    std::string note;
    FF_ASSIGN_OR_RETURN(std::unique_ptr<tokenizer::Tokenizer> tok,
                        quant::LoadTokenizerOrBytes(options.model_dir, options.tokenizer_path,
                                                    model.config.vocab_size, &note));
    if (!note.empty()) std::fprintf(stderr, "quantize: %s\n", note.c_str());
    FF_ASSIGN_OR_RETURN(std::string text, ReadFile(options.calib_file));
    FF_ASSIGN_OR_RETURN(calibration,
                        quant::CalibrationFromText(text, *tok, model.config.vocab_size,
                                                   options.calib_tokens, options.calib_length));
    calibration.info["file"] = std::filesystem::absolute(options.calib_file).string();
  }
  calibration.info["bf16_rope"] = options.bf16_rope;

  FF_ASSIGN_OR_RETURN(
      quant::InMemoryQuantizedModel quantized,
      quant::QuantizeInMemory(model, recipe, calibration, [](int64_t done, int64_t total) {
        std::fprintf(stderr, "\rcalibration: %lld/%lld sequences", static_cast<long long>(done),
                     static_cast<long long>(total));
        if (done == total) std::fprintf(stderr, "\n");
      }));

  quant::CheckpointWriteOptions write;
  write.source_dir = options.model_dir;
  write.out_dir = options.out_dir;
  write.force = options.force;
  write.calibration_info = calibration.info;
  write.progress = [](const quant::QuantizeProgress& progress) {
    const double eta =
        progress.elapsed_seconds / progress.index * (progress.total - progress.index);
    std::fprintf(stderr, "[%lld/%lld] %s  elapsed %s  ETA %s\n",
                 static_cast<long long>(progress.index), static_cast<long long>(progress.total),
                 progress.layer.c_str(), Seconds(progress.elapsed_seconds).c_str(),
                 Seconds(eta).c_str());
  };
  FF_RETURN_IF_ERROR(quant::WriteQuantizedCheckpoint(*quantized.model, *quantized.backend, write));
  std::fprintf(stderr, "quantize: wrote %s\n", options.out_dir.c_str());
  return absl::OkStatus();
}

}  // namespace

CommandRunner RegisterQuantizeCommand(CLI::App& app) {
  auto options = std::make_shared<QuantizeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "quantize",
      "Quantize a Hugging Face checkpoint with a recipe (calibrated on a text file) and write a "
      "quantized checkpoint directory (config.json, tokenizer, quantization.json, "
      "model.safetensors). Progress goes to stderr; the directory appears atomically.");
  cmd->add_option("--model", options->model_dir, "Hugging Face checkpoint directory")->required();
  cmd->add_option("--recipe", options->recipe,
                  "Recipe name (see `flatfleet accuracy --help`) or a JSON file "
                  "{\"name\", \"spec\", \"weight_clip_search\"}")
      ->required();
  cmd->add_option("--calib", options->calib_file,
                  "Calibration text (default: seeded random token ids)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--calib-tokens", options->calib_tokens,
                  "Use the first N tokens of the calibration text")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--calib-length", options->calib_length,
                  "Tokens per calibration sequence (one forward each)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--tokenizer", options->tokenizer_path,
                  "Tokenizer for the calibration text (default: the model's, else bytes)");
  cmd->add_option("--out", options->out_dir, "Output directory")->required();
  cmd->add_flag("--force", options->force, "Replace a non-empty --out directory");
  cmd->add_flag("--bf16-rope", options->bf16_rope,
                "Round rotary frequencies to bf16 during calibration (as `score --bf16-rope`)");
  return [options] {
    absl::Status status = RunQuantize(*options);
    if (!status.ok()) {
      std::fprintf(stderr, "flatfleet quantize: %s\n", std::string(status.message()).c_str());
      return 1;
    }
    return 0;
  };
}

}  // namespace flatfleet::tools
