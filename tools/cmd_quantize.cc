// `flatfleet quantize`: quantizes a Hugging Face checkpoint with a recipe, calibrated on a text
// file, and writes a quantized checkpoint directory (docs/QUANT_FORMATS.md, "Quantized
// checkpoint"). By default layer by layer in bounded memory (sequential_quantizer.h, sharded
// output, --resume); --all-at-once keeps the whole model in memory (the older path, kept for
// comparison). Progress goes to stderr; the directory appears atomically.
#include <malloc.h>

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
#include "nlohmann/json.hpp"
#include "quant/expert_calibration_fallback.h"
#include "quant/gptq_device_backend.h"
#include "quant/phase_timer.h"
#include "quant/quantized_checkpoint_manifest.h"
#include "quant/recipes.h"
#include "quantize/eval/model_under_test.h"
#include "quantize/quantize_model.h"
#include "quantize/sequential_quantizer.h"
#include "tools/commands.h"
#include "worker/quantized/quantized_checkpoint.h"
#include "worker/quantized/runnable_model.h"

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
  bool explicit_calib_size = false;  // --calib-tokens or --calib-length given
  bool all_at_once = false;
  bool resume = false;
  std::string work_dir;
  double shard_size_gb = 4.0;
  int64_t batch_tokens = 512;
  std::string calib_inputs = "quantized";
  int64_t stop_after_layers = -1;  // hidden test hook
  std::string device = "cpu";
  int64_t min_expert_tokens = -1;  // -1: not given (the recipe's)
  std::string phase_times_file;    // JSON lines, one per layer (--phase-times)
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

// "  experts 8: tokens min 0 median 5 max 11; of 24 linears 4 rtn-clip-search, 20 gptq-damped"
// (MoE layers only).
std::string ExpertSummary(const quant::LayerProgress& progress) {
  if (progress.experts == 0) return "";
  return absl::StrFormat(
      "  experts %d: tokens min %d median %d max %d; of %d linears %d %s, %d %s", progress.experts,
      progress.expert_tokens_min, progress.expert_tokens_median, progress.expert_tokens_max,
      progress.expert_linears, progress.expert_linears_rtn, quant::kExpertFallbackMethodName,
      progress.expert_linears_damped, quant::kExpertDampedGptqMethodName);
}

// "    phases:  read 1.21s (5%)  calibrate_forward 10.3s (41%)  ...  other 0.02s (0%)": where
// the layer's time went (quant/phase_timer.h), in phase order; a phase under 0.5% of it is left
// out (--phase-times has them all).
std::string PhaseSummary(const quant::LayerProgress& progress) {
  std::string line = "    phases:";
  const double total = progress.layer_seconds > 0.0 ? progress.layer_seconds : 1.0;
  auto add = [&](std::string_view name, double seconds) {
    if (seconds < 0.005 * total) return;
    const double percent = 100.0 * seconds / total;
    if (seconds < 10.0) {
      absl::StrAppendFormat(&line, "  %s %.2fs (%.0f%%)", name, seconds, percent);
    } else {
      absl::StrAppendFormat(&line, "  %s %.1fs (%.0f%%)", name, seconds, percent);
    }
  };
  for (size_t p = 0; p < quant::kQuantizePhaseCount; ++p) {
    const auto phase = static_cast<quant::QuantizePhase>(p);
    add(quant::QuantizePhaseName(phase), progress.phases[phase]);
  }
  add("other", progress.layer_seconds - progress.phases.total());
  return line;
}

// One JSON object per line: {"layer", "layers", "seconds", "phases": {name: seconds, ...,
// "other"}} with every phase (zeros included).
std::string PhaseJson(const quant::LayerProgress& progress) {
  nlohmann::json phases = nlohmann::json::object();
  for (size_t p = 0; p < quant::kQuantizePhaseCount; ++p) {
    const auto phase = static_cast<quant::QuantizePhase>(p);
    phases[std::string(quant::QuantizePhaseName(phase))] = progress.phases[phase];
  }
  phases["other"] = progress.layer_seconds - progress.phases.total();
  const nlohmann::json line = {{"layer", progress.layer},
                               {"layers", progress.layers},
                               {"seconds", progress.layer_seconds},
                               {"peak_rss_bytes", progress.peak_rss_bytes},
                               {"phases", phases}};
  return line.dump();
}

absl::Status RunSequential(const QuantizeOptions& options, const quant::QuantRecipe& recipe,
                           const quant::CalibrationData& calibration) {
  // Large buffers (a layer's weights) always come from mmap and go back on free: glibc's dynamic
  // threshold would otherwise serve the next layer's from a heap that never shrinks.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  quant::SequentialQuantizeOptions run;
  run.source_dir = options.model_dir;
  run.out_dir = options.out_dir;
  run.force = options.force;
  run.work_dir = options.work_dir;
  run.resume = options.resume;
  run.shard_bytes = static_cast<int64_t>(options.shard_size_gb * double(int64_t{1} << 30));
  run.batch_tokens = options.batch_tokens;
  run.model_options.bf16_rotary_frequencies = options.bf16_rope;
  run.calibration_info = calibration.info;
  run.stop_after_layers = options.stop_after_layers;
  run.calibration_inputs = options.calib_inputs == "float"
                               ? quant::CalibrationInputs::kFloatPrefix
                               : quant::CalibrationInputs::kQuantizedPrefix;
  std::shared_ptr<std::FILE> phase_file;
  if (!options.phase_times_file.empty()) {
    phase_file.reset(std::fopen(options.phase_times_file.c_str(), "w"), [](std::FILE* file) {
      if (file != nullptr) std::fclose(file);
    });
    if (phase_file == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--phase-times: cannot create %s", options.phase_times_file));
    }
  }
  run.progress = [phase_file](const quant::LayerProgress& progress) {
    const double peak_gib = static_cast<double>(progress.peak_rss_bytes) / double(1 << 30);
    if (progress.resumed) {
      std::fprintf(stderr, "[layer %lld/%lld] done by the interrupted run (resumed)%s\n",
                   static_cast<long long>(progress.layer), static_cast<long long>(progress.layers),
                   ExpertSummary(progress).c_str());
      return;
    }
    const std::string device =
        quant::SelectedGptqDevice() == quant::GptqDevice::kCuda
            ? absl::StrFormat("  peak device %.2f GiB",
                              static_cast<double>(quant::GptqDevicePeakBytes()) / double(1 << 30))
            : std::string();
    std::fprintf(stderr, "[layer %lld/%lld] %s  elapsed %s  ETA %s  peak RSS %.2f GiB%s%s\n",
                 static_cast<long long>(progress.layer), static_cast<long long>(progress.layers),
                 Seconds(progress.layer_seconds).c_str(), Seconds(progress.elapsed_seconds).c_str(),
                 Seconds(progress.eta_seconds).c_str(), peak_gib, device.c_str(),
                 ExpertSummary(progress).c_str());
    std::fprintf(stderr, "%s\n", PhaseSummary(progress).c_str());
    if (phase_file != nullptr) {
      std::fprintf(phase_file.get(), "%s\n", PhaseJson(progress).c_str());
      std::fflush(phase_file.get());
    }
  };
  if (options.resume) {
    std::fprintf(stderr, "quantize: --resume from %s\n",
                 (options.work_dir.empty() ? quant::DefaultWorkDirectory(options.out_dir)
                                           : std::filesystem::path(options.work_dir))
                     .c_str());
  }
  return quant::QuantizeSequentially(recipe, calibration, run);
}

absl::Status RunQuantize(const QuantizeOptions& options) {
  // Refuse an occupied output before any work.
  FF_RETURN_IF_ERROR(quant::CheckOutputDirectory(options.out_dir, options.force));
  if (options.all_at_once && options.resume) {
    return absl::InvalidArgumentError("--resume applies to the layer-by-layer path only");
  }
  if (options.all_at_once && !options.phase_times_file.empty()) {
    return absl::InvalidArgumentError("--phase-times applies to the layer-by-layer path only");
  }
  if (!(options.shard_size_gb > 0.0)) {
    return absl::InvalidArgumentError("--shard-size must be positive");
  }
  FF_ASSIGN_OR_RETURN(quant::QuantRecipe recipe, ResolveRecipe(options.recipe));
  if (options.min_expert_tokens >= 0) recipe.min_expert_tokens = options.min_expert_tokens;
  if (options.device == "cuda") FF_RETURN_IF_ERROR(quant::SetGptqDevice(quant::GptqDevice::kCuda));
  FF_ASSIGN_OR_RETURN(quant::ModelUnderTest model,
                      quant::CheckpointModel(options.model_dir, options.bf16_rope));
  std::fprintf(stderr, "quantize: %s with recipe %s -> %s (%s)\n", options.model_dir.c_str(),
               recipe.name.c_str(), options.out_dir.c_str(),
               options.all_at_once ? "all at once" : "layer by layer");

  quant::CalibrationData calibration;
  if (options.calib_file.empty()) {
    calibration = options.explicit_calib_size
                      ? quant::RandomCalibration(model.config.vocab_size, options.calib_tokens,
                                                 options.calib_length)
                      : quant::RandomCalibration(model.config.vocab_size);
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
  if (!options.all_at_once) {
    FF_RETURN_IF_ERROR(RunSequential(options, recipe, calibration));
    std::fprintf(stderr, "quantize: wrote %s\n", options.out_dir.c_str());
    return absl::OkStatus();
  }

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
      "safetensors shards). Progress goes to stderr; the directory appears atomically.");
  cmd->add_option("--model", options->model_dir, "Hugging Face checkpoint directory")->required();
  cmd->add_option("--recipe", options->recipe,
                  "Recipe name (see `flatfleet accuracy --help`) or a JSON file "
                  "{\"name\", \"spec\", \"weight_clip_search\", \"min_expert_tokens\"}")
      ->required();
  cmd->add_option("--calib", options->calib_file,
                  "Calibration text (default: seeded random token ids)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--calib-tokens", options->calib_tokens,
                  "Use the first N tokens of the calibration text (without --calib: N random "
                  "ids; default then 16 sequences of 64)")
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
  cmd->add_flag("--all-at-once", options->all_at_once,
                "Build and calibrate the whole model in memory (the older path; default: layer "
                "by layer in bounded memory, each layer calibrated on the quantized prefix)");
  cmd->add_option("--shard-size", options->shard_size_gb,
                  "Output shard size in GiB (model-00001-of-000NN.safetensors)")
      ->capture_default_str();
  cmd->add_flag("--resume", options->resume,
                "Continue an interrupted run from its last finished layer (its work directory)");
  cmd->add_option("--work-dir", options->work_dir,
                  "Where partial output is kept until the run finishes (default: the hidden "
                  "sibling .OUT.quantize-work)");
  cmd->add_option("--calib-batch-tokens", options->batch_tokens,
                  "Calibration tokens per forward (whole sequences)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--calib-inputs", options->calib_inputs,
                  "What each layer calibrates on: quantized (the quantized prefix's outputs, "
                  "GPTQ's practice) or float (the float model's activations, as --all-at-once)")
      ->capture_default_str()
      ->check(CLI::IsMember({"quantized", "float"}));
  cmd->add_option("--device", options->device,
                  "Where GPTQ's Gram accumulation and solver run: cpu, or cuda (a GPU; act_order "
                  "and clip-search GPTQ stay on the CPU, as does everything else)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--min-expert-tokens", options->min_expert_tokens,
                  "A Mixtral expert linear that fewer calibration tokens are routed to is "
                  "quantized data-free (RTN with the clip search) instead of by the recipe "
                  "(always one with none; default: the recipe file's, else in_features / 16)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--phase-times", options->phase_times_file,
                  "Also write each layer's time per phase (the progress line's `phases:`, every "
                  "phase, in seconds) to FILE, one JSON object per line (layer by layer only)");
  cmd->add_option("--stop-after-layers", options->stop_after_layers)
      ->group("");  // test hook: simulate a crash after N layers
  return [options, cmd] {
    options->explicit_calib_size =
        cmd->count("--calib-tokens") > 0 || cmd->count("--calib-length") > 0;
    absl::Status status = RunQuantize(*options);
    if (!status.ok()) {
      std::fprintf(stderr, "flatfleet quantize: %s\n", std::string(status.message()).c_str());
      return 1;
    }
    return 0;
  };
}

}  // namespace flatfleet::tools
