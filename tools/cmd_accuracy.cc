// `flatfleet accuracy`: how much each quantization recipe changes a model's logits. Runs the
// model through QuantizedCpuBackend per recipe and prints a markdown table of KL(p_ref || p_quant)
// and top-1 agreement against reference logits (a reference file made by Hugging Face in
// float32, or for `--model stress` the float32 engine on the synthetic outlier model).
// With `--text`, the real-text protocol of quantize/text_accuracy.h instead: calibrated
// on the text's first part, perplexity, KL and top-1 against the float32 model on the rest, and
// the weight bits per parameter stored.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "common/strict_json.h"
#include "quant/logit_agreement.h"
#include "quant/quantized_checkpoint_manifest.h"
#include "quant/recipes.h"
#include "quantize/eval/model_under_test.h"
#include "quantize/eval/outlier_stress_model.h"
#include "quantize/eval/recipe_accuracy.h"
#include "quantize/text_accuracy.h"
#include "tools/commands.h"
#include "worker/quantized/runnable_model.h"

namespace flatfleet::tools {
namespace {

struct AccuracyOptions {
  std::string model;
  std::string reference;
  std::string recipes =
      "w8a8,w8a8-smooth,w8a8-hadamard-gptq,w4a8,w4a8-intscale,w4a8-gptq,w4a4,w4a4-hadamard,"
      "w4a4-quik,w4a4-flatten,w3a8,w3a8-gptq,w2a8";
  bool bf16_rope = false;
  std::string text;  // set: the real-text protocol
  quant::TextAccuracyOptions text_options;
};

void PrintRow(const std::string& model, const std::string& recipe,
              const quant::LogitAgreement& agreement) {
  std::printf("| %s | %s | %.3g | %.3g | %.4f (%lld/%lld) | %.3g |\n", model.c_str(),
              recipe.c_str(), agreement.mean_kl, agreement.max_kl, agreement.top1_agreement,
              static_cast<long long>(std::llround(agreement.top1_agreement * agreement.positions)),
              static_cast<long long>(agreement.positions), agreement.max_flipped_margin);
  std::fflush(stdout);
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrFormat("cannot read %s", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// "a,b,c": recipe names, or recipe JSON files (as `quantize --recipe FILE.json`).
absl::StatusOr<std::vector<quant::QuantRecipe>> ResolveRecipes(const std::string& list) {
  std::vector<quant::QuantRecipe> recipes;
  for (absl::string_view entry : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    const std::string item(absl::StripAsciiWhitespace(entry));
    if (!item.ends_with(".json")) {
      FF_ASSIGN_OR_RETURN(quant::QuantRecipe recipe, quant::RecipeByName(item));
      recipes.push_back(std::move(recipe));
      continue;
    }
    FF_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(item));
    FF_ASSIGN_OR_RETURN(nlohmann::json json, ParseStrictJson(text, item));
    FF_ASSIGN_OR_RETURN(
        quant::QuantRecipe recipe,
        quant::RecipeFromJson(json, std::filesystem::path(item).stem().string(), item));
    recipes.push_back(std::move(recipe));
  }
  if (recipes.empty()) return absl::InvalidArgumentError("no recipe given");
  return recipes;
}

absl::StatusOr<int> RunTextAccuracy(const AccuracyOptions& options,
                                    const std::vector<quant::QuantRecipe>& recipes) {
  FF_ASSIGN_OR_RETURN(quant::ModelUnderTest model,
                      quant::CheckpointModel(options.model, options.bf16_rope));
  std::string note;
  FF_ASSIGN_OR_RETURN(
      std::unique_ptr<tokenizer::Tokenizer> tok,
      quant::LoadTokenizerOrBytes(options.model, "", model.config.vocab_size, &note));
  if (!note.empty()) std::fprintf(stderr, "accuracy: %s\n", note.c_str());
  FF_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(options.text));
  FF_ASSIGN_OR_RETURN(quant::TextEvaluation evaluation,
                      quant::PrepareTextEvaluation(model, *tok, text, options.text_options));
  const quant::TextAccuracyOptions& o = options.text_options;
  std::printf(
      "model %s; text %s: calibrated on the first %lld bytes (%lld tokens in sequences of %lld), "
      "evaluated on %lld positions (%lld windows of %lld tokens) of the other %lld bytes; KL and "
      "top-1 against the float32 model\n\n",
      model.name.c_str(), options.text.c_str(),
      static_cast<long long>(evaluation.calibration_bytes),
      static_cast<long long>(evaluation.calibration.tokens()),
      static_cast<long long>(o.calibration_length), static_cast<long long>(evaluation.positions()),
      static_cast<long long>(evaluation.windows.batch), static_cast<long long>(o.window),
      static_cast<long long>(evaluation.evaluation_bytes));
  std::printf(
      "| recipe | weight bits/param | perplexity | vs fp32 | mean KL | top-1 |\n"
      "|---|---|---|---|---|---|\n");
  const double float_ppl = std::exp(evaluation.float_mean_nll);
  std::printf("| fp32 | 32 | %.4f | — | 0 | 1.0000 |\n", float_ppl);
  for (const quant::QuantRecipe& recipe : recipes) {
    FF_ASSIGN_OR_RETURN(quant::RecipeTextAccuracy result,
                        quant::MeasureRecipeOnText(model, recipe, evaluation));
    std::printf("| %s | %.2f | %.4f | %+.2f%% | %.4g | %.4f |\n", recipe.name.c_str(),
                result.weight_size.bits_per_parameter(), result.perplexity,
                100.0 * (result.perplexity / float_ppl - 1.0), result.agreement.mean_kl,
                result.agreement.top1_agreement);
    std::fflush(stdout);
  }
  return 0;
}

absl::StatusOr<int> RunAccuracy(const AccuracyOptions& options) {
  FF_ASSIGN_OR_RETURN(std::vector<quant::QuantRecipe> recipes, ResolveRecipes(options.recipes));
  if (!options.text.empty()) return RunTextAccuracy(options, recipes);
  quant::ModelUnderTest model;
  quant::TokenBatch tokens;
  std::vector<float> reference;
  std::vector<float> float_logits;
  if (options.model == "stress" || options.model == "stress-raw") {
    quant::OutlierStressOptions stress;
    stress.compensate_weights = options.model == "stress";
    model = quant::OutlierStressModel(stress);
    tokens = quant::RandomTokens(/*batch=*/2, /*length=*/16, model.config.vocab_size,
                                 /*seed=*/99);
    FF_ASSIGN_OR_RETURN(reference, quant::FloatLogits(model, tokens));
    float_logits = reference;
  } else {
    FF_ASSIGN_OR_RETURN(model, quant::CheckpointModel(options.model, options.bf16_rope));
    const std::string reference_path =
        options.reference.empty() ? options.model + "/reference.safetensors" : options.reference;
    FF_ASSIGN_OR_RETURN(quant::LogitReference ref, quant::ReadLogitReference(reference_path));
    if (ref.vocab != model.config.vocab_size) {
      return absl::InvalidArgumentError("reference vocabulary differs from the model's");
    }
    tokens = ref.tokens;
    reference = std::move(ref.logits);
    FF_ASSIGN_OR_RETURN(float_logits, quant::FloatLogits(model, tokens));
  }
  std::printf(
      "| model | recipe | mean KL | max KL | top-1 | largest flipped margin |\n"
      "|---|---|---|---|---|---|\n");
  FF_ASSIGN_OR_RETURN(quant::LogitAgreement float_agreement,
                      quant::CompareLogits(reference, float_logits, model.config.vocab_size));
  PrintRow(model.name, "fp32", float_agreement);
  const quant::TokenBatch calibration = quant::CalibrationTokens(model.config.vocab_size);
  for (const quant::QuantRecipe& recipe : recipes) {
    FF_ASSIGN_OR_RETURN(quant::LogitAgreement agreement,
                        quant::MeasureRecipe(model, recipe, tokens, reference, calibration));
    PrintRow(model.name, recipe.name, agreement);
  }
  return 0;
}

}  // namespace

CommandRunner RegisterAccuracyCommand(CLI::App& app) {
  auto options = std::make_shared<AccuracyOptions>();
  CLI::App* cmd = app.add_subcommand(
      "accuracy",
      "KL divergence and top-1 agreement of quantization recipes (QuantizedCpuBackend) against "
      "reference logits, as a markdown table.");
  cmd->add_option(
         "--model", options->model,
         "Checkpoint directory, or 'stress' for the synthetic outlier model ('stress-raw': "
         "without compensating weights)")
      ->required();
  cmd->add_option("--reference", options->reference,
                  "Reference safetensors with input_ids and logits (default: "
                  "MODEL/reference.safetensors; unused for 'stress')");
  cmd->add_option("--recipes", options->recipes,
                  "Comma-separated recipe names or recipe JSON files (as `quantize --recipe`)")
      ->capture_default_str();
  cmd->add_flag("--bf16-rope", options->bf16_rope,
                "Round rotary frequencies to bf16 (how the shared fixtures' references were made)");
  quant::TextAccuracyOptions& text = options->text_options;
  cmd->add_option("--text", options->text,
                  "Real-text mode: calibrate on the first part of this text, report perplexity, "
                  "KL and top-1 against the float32 model on the rest, and stored weight bits")
      ->check(CLI::ExistingFile);
  cmd->add_option("--calib-fraction", text.calibration_fraction,
                  "With --text: the calibration part (cut at the next line break)")
      ->capture_default_str();
  cmd->add_option("--calib-tokens", text.calibration_tokens,
                  "With --text: calibration tokens (from the start of the calibration part)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--calib-length", text.calibration_length,
                  "With --text: tokens per calibration sequence")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--window", text.window, "With --text: tokens per evaluation window")
      ->capture_default_str();
  cmd->add_option("--positions", text.positions,
                  "With --text: scored positions at least (whole windows)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  return [options] {
    absl::StatusOr<int> code = RunAccuracy(*options);
    if (!code.ok()) {
      std::fprintf(stderr, "flatfleet accuracy: %s\n",
                   std::string(code.status().message()).c_str());
      return 2;
    }
    return *code;
  };
}

}  // namespace flatfleet::tools
