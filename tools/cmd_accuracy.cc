// `flatfleet accuracy`: how much each quantization recipe changes a model's logits. Runs the
// model through QuantizedCpuBackend per recipe and prints a markdown table of KL(p_ref || p_quant)
// and top-1 agreement against reference logits (a reference file made by Hugging Face in
// float32, or for `--model stress` the float32 engine on the synthetic outlier model).
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/status_macros.h"
#include "quant/eval/model_under_test.h"
#include "quant/eval/outlier_stress_model.h"
#include "quant/eval/recipe_accuracy.h"
#include "quant/logit_agreement.h"
#include "quant/recipes.h"
#include "tools/commands.h"

namespace flatfleet::tools {
namespace {

struct AccuracyOptions {
  std::string model;
  std::string reference;
  std::string recipes =
      "w8a8,w8a8-smooth,w8a8-hadamard-gptq,w4a8,w4a8-intscale,w4a8-gptq,w4a4,w4a4-hadamard,"
      "w4a4-quik,w4a4-flatten,w3a8,w3a8-gptq,w2a8";
  bool bf16_rope = false;
};

void PrintRow(const std::string& model, const std::string& recipe,
              const quant::LogitAgreement& agreement) {
  std::printf("| %s | %s | %.3g | %.3g | %.4f (%lld/%lld) | %.3g |\n", model.c_str(),
              recipe.c_str(), agreement.mean_kl, agreement.max_kl, agreement.top1_agreement,
              static_cast<long long>(std::llround(agreement.top1_agreement * agreement.positions)),
              static_cast<long long>(agreement.positions), agreement.max_flipped_margin);
  std::fflush(stdout);
}

absl::StatusOr<int> RunAccuracy(const AccuracyOptions& options) {
  FF_ASSIGN_OR_RETURN(std::vector<quant::QuantRecipe> recipes,
                      quant::RecipesFromList(options.recipes));
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
  cmd->add_option("--recipes", options->recipes, "Comma-separated recipe names")
      ->capture_default_str();
  cmd->add_flag("--bf16-rope", options->bf16_rope,
                "Round rotary frequencies to bf16 (how the shared fixtures' references were made)");
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
