// `flatfleet score`: checks the engine against reference logits and greedy tokens made by
// Hugging Face transformers.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/safetensors.h"
#include "common/status_macros.h"
#include "kernels/cpu/cpu_backend.h"
#include "quant/logit_agreement.h"
#include "quant/quantized_backend.h"
#include "quant/recipes.h"
#include "quantize/eval/model_under_test.h"
#include "quantize/eval/recipe_accuracy.h"
#include "tools/commands.h"
#include "tools/device_flags.h"
#include "worker/generate/generator.h"
#include "worker/model/llama_model.h"
#include "worker/quantized/runnable_model.h"
#include "worker/sampling/sampler.h"

namespace flatfleet::tools {
namespace {

struct ScoreOptions {
  std::string model_dir;
  std::string reference;
  double max_rel_error = 1e-3;
  bool per_position = false;
  bool bf16_rope = false;
  std::string recipe;  // empty: float32
  double min_top1 = 0.98;
  engine::DeviceOptions device;
};

struct Reference {
  Tensor input_ids;      // [B, T]
  Tensor logits;         // [B, T, V]
  Tensor greedy_prompt;  // [1, P]
  Tensor greedy;         // [1, G]
};

absl::StatusOr<Tensor> ReadTensor(const SafetensorsFile& file, const std::string& name, int rank) {
  const TensorInfo* info = file.Find(name);
  if (info == nullptr) {
    return absl::NotFoundError(absl::StrFormat("%s: tensor '%s' is missing", file.path(), name));
  }
  if (static_cast<int>(info->shape.size()) != rank) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: tensor '%s' has rank %d, expected %d",
                                                      file.path(), name, info->shape.size(), rank));
  }
  return ToFloat32(*info);
}

absl::StatusOr<Reference> ReadReference(const std::string& path, int64_t vocab) {
  FF_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
  Reference ref;
  FF_ASSIGN_OR_RETURN(ref.input_ids, ReadTensor(*file, "input_ids", 2));
  FF_ASSIGN_OR_RETURN(ref.logits, ReadTensor(*file, "logits", 3));
  FF_ASSIGN_OR_RETURN(ref.greedy_prompt, ReadTensor(*file, "greedy_prompt", 2));
  FF_ASSIGN_OR_RETURN(ref.greedy, ReadTensor(*file, "greedy", 2));
  if (ref.logits.dim(0) != ref.input_ids.dim(0) || ref.logits.dim(1) != ref.input_ids.dim(1)) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: logits %s do not match input_ids %s",
                                                      path, ref.logits.ShapeString(),
                                                      ref.input_ids.ShapeString()));
  }
  if (ref.logits.dim(2) != vocab) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: logits have vocabulary %d but the model has %d", path, ref.logits.dim(2), vocab));
  }
  if (ref.greedy_prompt.dim(0) != 1 || ref.greedy.dim(0) != 1 || ref.input_ids.dim(1) == 0 ||
      ref.greedy_prompt.dim(1) == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: expected greedy_prompt [1, P>0] and greedy [1, G], got %s and %s",
                        path, ref.greedy_prompt.ShapeString(), ref.greedy.ShapeString()));
  }
  for (const Tensor* ids : {&ref.input_ids, &ref.greedy_prompt, &ref.greedy}) {
    for (float id : ids->span()) {
      if (id < 0 || id >= vocab || id != std::floor(id)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: token id %g outside the model's vocabulary [0, %d)", path, id, vocab));
      }
    }
  }
  return ref;
}

std::vector<int32_t> ToIds(const float* values, int64_t n) {
  return std::vector<int32_t>(values, values + n);
}

// The model on a QuantizedCpuBackend for options.recipe, calibrated like `flatfleet accuracy`.
absl::StatusOr<std::unique_ptr<engine::LlamaModel>> LoadQuantizedModel(
    const ScoreOptions& options, std::unique_ptr<quant::QuantizedCpuBackend>& backend) {
  FF_ASSIGN_OR_RETURN(quant::QuantRecipe recipe, quant::RecipeByName(options.recipe));
  FF_ASSIGN_OR_RETURN(quant::ModelUnderTest source,
                      quant::CheckpointModel(options.model_dir, options.bf16_rope));
  FF_ASSIGN_OR_RETURN(quant::KeepFloatFilter keep_float, source.FloatLinears());
  FF_ASSIGN_OR_RETURN(backend, quant::QuantizedCpuBackend::Create(recipe, std::move(keep_float)));
  FF_ASSIGN_OR_RETURN(auto model, source.Build(*backend));
  backend->set_mode(quant::LinearMode::kCalibrate);
  FF_RETURN_IF_ERROR(
      quant::AllPositionLogits(*model, quant::CalibrationTokens(source.config.vocab_size))
          .status());
  backend->set_mode(quant::LinearMode::kQuantized);
  return model;
}

absl::StatusOr<int> RunScore(const ScoreOptions& options) {
  engine::SelectedBackend selected;                               // outlives the model
  std::unique_ptr<quant::QuantizedCpuBackend> quantized_backend;  // outlives the model
  quant::RunnableModel checkpoint;  // float or quantized directory (when no --recipe)
  std::unique_ptr<engine::LlamaModel> model;
  bool quantized = !options.recipe.empty();
  if (options.recipe.empty()) {
    engine::ModelOptions model_options;
    model_options.bf16_rotary_frequencies = options.bf16_rope;
    FF_ASSIGN_OR_RETURN(selected, tools::OpenDevice(options.device, "score"));
    FF_ASSIGN_OR_RETURN(
        checkpoint, quant::LoadRunnableModel(options.model_dir, model_options, selected.backend));
    model = std::move(checkpoint.model);
    if (checkpoint.quantized()) {
      quantized = true;
      std::printf("quantized checkpoint: recipe %s (reference checks below are informational)\n",
                  checkpoint.manifest->recipe.name.c_str());
    }
  } else if (quant::IsQuantizedCheckpoint(options.model_dir)) {
    return absl::InvalidArgumentError(
        "--recipe quantizes a float checkpoint; this directory is already quantized (drop "
        "--recipe)");
  } else {
    FF_ASSIGN_OR_RETURN(model, LoadQuantizedModel(options, quantized_backend));
    std::printf("quantization recipe: %s (reference checks below are informational)\n",
                options.recipe.c_str());
  }
  const ModelConfig& config = model->config();
  const std::string reference_path =
      options.reference.empty()
          ? (std::filesystem::path(options.model_dir) / "reference.safetensors").string()
          : options.reference;
  FF_ASSIGN_OR_RETURN(Reference ref, ReadReference(reference_path, config.vocab_size));
  std::printf("model: %s (%s, %lld layers, hidden %lld, vocab %lld; rotary frequencies %s)\n",
              options.model_dir.c_str(), config.model_type.c_str(),
              static_cast<long long>(config.num_hidden_layers),
              static_cast<long long>(config.hidden_size), static_cast<long long>(config.vocab_size),
              options.bf16_rope ? "bf16" : "float32");

  // All positions of every prompt, in one batch.
  const int64_t batch = ref.input_ids.dim(0);
  const int64_t length = ref.input_ids.dim(1);
  const int64_t vocab = config.vocab_size;
  FF_ASSIGN_OR_RETURN(std::unique_ptr<engine::KvCache> cache, model->CreateKvCache(length, batch));
  std::vector<std::vector<int32_t>> prompts;
  std::vector<engine::SequenceChunk> chunks;
  for (int64_t b = 0; b < batch; ++b) {
    prompts.push_back(ToIds(ref.input_ids.row(b), length));
    FF_ASSIGN_OR_RETURN(engine::SequenceId sequence, cache->AddSequence());
    chunks.push_back({sequence, prompts.back(), /*all_logits=*/true});
  }
  FF_ASSIGN_OR_RETURN(Tensor logits, model->Forward(chunks, *cache));
  double diff_squares = 0.0;
  double ref_squares = 0.0;
  int64_t agree = 0;
  for (int64_t row = 0; row < batch * length; ++row) {
    const float* out = logits.row(row);
    const float* expected = ref.logits.data() + row * vocab;
    double row_diff = 0.0;
    double row_ref = 0.0;
    for (int64_t v = 0; v < vocab; ++v) {
      const double d = static_cast<double>(out[v]) - expected[v];
      row_diff += d * d;
      row_ref += static_cast<double>(expected[v]) * expected[v];
    }
    diff_squares += row_diff;
    ref_squares += row_ref;
    if (options.per_position) {
      std::printf("  sequence %lld position %lld: relative error %.3e\n",
                  static_cast<long long>(row / length), static_cast<long long>(row % length),
                  std::sqrt(row_diff / row_ref));
    }
    agree += engine::Argmax({out, static_cast<size_t>(vocab)}) ==
             engine::Argmax({expected, static_cast<size_t>(vocab)});
  }
  const double rel_error = std::sqrt(diff_squares / ref_squares);
  // bf16 activations and weights on the GPU: the logits differ from float32 by about 2^-8
  // relative per rounding; the default bound there is 3e-2 (the float32 CPU's is 1e-3).
  const double bound =
      selected.cuda && options.max_rel_error == 1e-3 ? 3e-2 : options.max_rel_error;
  const bool logits_ok = rel_error <= bound;
  std::printf("logits: relative error %.3e over %lld x %lld positions (bound %.1e): %s\n",
              rel_error, static_cast<long long>(batch), static_cast<long long>(length), bound,
              logits_ok ? "ok" : "FAIL");
  const double top1 = static_cast<double>(agree) / static_cast<double>(batch * length);
  // Top-1 where the reference itself decides it: its top-2 margin exceeds four times the
  // engine's measured per-logit error (relative error times the logits' rms). A near-tie below
  // that flips with any engine of this precision (random-weight fixtures have some: mixtral-tiny
  // has a margin of 1.4e-3 against logits of rms 0.86), so it is reported, not gated.
  const double ref_rms = std::sqrt(ref_squares / static_cast<double>(batch * length * vocab));
  const double decidable_margin = 4.0 * rel_error * ref_rms;
  int64_t decidable = 0, decidable_agree = 0;
  for (int64_t row = 0; row < batch * length; ++row) {
    const float* expected = ref.logits.data() + row * vocab;
    float first = -INFINITY, second = -INFINITY;
    for (int64_t v = 0; v < vocab; ++v) {
      if (expected[v] > first) {
        second = first;
        first = expected[v];
      } else if (expected[v] > second) {
        second = expected[v];
      }
    }
    if (first - second <= decidable_margin) continue;
    ++decidable;
    decidable_agree += engine::Argmax({logits.row(row), static_cast<size_t>(vocab)}) ==
                       engine::Argmax({expected, static_cast<size_t>(vocab)});
  }
  const double decidable_top1 =
      decidable == 0 ? 1.0 : static_cast<double>(decidable_agree) / static_cast<double>(decidable);
  const bool top1_ok = decidable_top1 >= options.min_top1;
  std::printf("top-1 agreement: %lld / %lld = %.4f; at the %lld positions whose reference margin "
              "exceeds %.2e: %.4f (bound %.2f): %s\n",
              static_cast<long long>(agree), static_cast<long long>(batch * length), top1,
              static_cast<long long>(decidable), decidable_margin, decidable_top1,
              options.min_top1, top1_ok ? "ok" : "FAIL");
  if (quantized) {
    FF_ASSIGN_OR_RETURN(quant::LogitAgreement agreement,
                        quant::CompareLogits(ref.logits.span(), logits.span(), vocab));
    std::printf("quantized vs reference: mean KL %.4g (max %.4g), top-1 %.4f\n", agreement.mean_kl,
                agreement.max_kl, agreement.top1_agreement);
  }

  // Greedy decoding through the KV cache, no stop tokens.
  engine::GenerationRequest request;
  request.prompt = ToIds(ref.greedy_prompt.data(), ref.greedy_prompt.dim(1));
  request.params.temperature = 0;
  request.params.max_tokens = ref.greedy.dim(1);
  request.params.ignore_eos = true;
  engine::Generator generator(*model, nullptr);
  FF_ASSIGN_OR_RETURN(auto results, generator.Generate({&request, 1}));
  const std::vector<int32_t> expected_greedy = ToIds(ref.greedy.data(), ref.greedy.dim(1));
  const std::vector<int32_t>& got = results[0].tokens;
  int64_t matching = 0;
  while (matching < static_cast<int64_t>(std::min(got.size(), expected_greedy.size())) &&
         got[matching] == expected_greedy[matching]) {
    ++matching;
  }
  const bool greedy_ok = got == expected_greedy;
  std::printf("greedy: %lld / %lld tokens match: %s\n", static_cast<long long>(matching),
              static_cast<long long>(expected_greedy.size()), greedy_ok ? "ok" : "FAIL");
  if (!greedy_ok) {
    std::printf("  expected: %s\n  got:      %s\n", absl::StrJoin(expected_greedy, " ").c_str(),
                absl::StrJoin(got, " ").c_str());
  }
  // bf16 greedy decoding may part from float32 at a near-tie of random-weight fixtures: on the
  // GPU the logits bound and top-1 agreement gate, greedy is reported.
  const bool pass = logits_ok && top1_ok && (greedy_ok || selected.cuda);
  std::printf("%s\n", pass ? "PASS" : "FAIL");
  // A quantized model is not expected to meet the float bounds: report, do not gate.
  if (quantized) return 0;
  return pass ? 0 : 1;
}

}  // namespace

CommandRunner RegisterScoreCommand(CLI::App& app) {
  auto options = std::make_shared<ScoreOptions>();
  CLI::App* cmd = app.add_subcommand(
      "score",
      "Compare the engine's logits and greedy decoding with a reference file (input_ids, logits, "
      "greedy_prompt, greedy). Exits 1 when the relative logits error exceeds the bound or the "
      "greedy tokens differ.");
  cmd->add_option("--model", options->model_dir,
                  "Checkpoint directory: Hugging Face float, or quantized (`flatfleet quantize`; "
                  "then KL and top-1 are printed and the float checks only inform)")
      ->required();
  cmd->add_option("--reference", options->reference,
                  "Reference safetensors (default: MODEL/reference.safetensors)");
  cmd->add_option("--max-rel-error", options->max_rel_error,
                  "Largest allowed ||out - ref|| / ||ref|| over all logits")
      ->capture_default_str();
  cmd->add_flag("--per-position", options->per_position, "Print the error of every position");
  cmd->add_option("--min-top1", options->min_top1,
                  "Least share of positions whose argmax equals the reference's (among those "
                  "whose reference top-2 margin exceeds 4x the measured per-logit error)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  tools::AddDeviceFlags(cmd, &options->device);
  cmd->add_option("--recipe", options->recipe,
                  "Run the model quantized by this recipe (QuantizedCpuBackend) and also print KL "
                  "and top-1 against the reference; the float checks then only inform (exit 0)");
  cmd->add_flag("--bf16-rope", options->bf16_rope,
                "Round rotary frequencies to bf16, like a Hugging Face model cast with "
                "model.to(torch.bfloat16) (how the shared fixtures' references were made)");
  return [options] {
    absl::StatusOr<int> code = RunScore(*options);
    if (!code.ok()) {
      std::fprintf(stderr, "flatfleet score: %s\n", std::string(code.status().message()).c_str());
      return 2;
    }
    return *code;
  };
}

}  // namespace flatfleet::tools
