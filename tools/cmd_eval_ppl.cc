// `flatfleet eval-ppl`: perplexity of a float or quantized checkpoint over windows of a
// tokenized text. Window i covers tokens [i * stride, i * stride + window); it scores the tokens
// no earlier window scored, each predicted from the tokens before it inside the window; a
// window's first token has no context and is never scored (Hugging Face's strided perplexity).
// ppl = exp(mean negative log-likelihood in nats).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "tools/commands.h"
#include "tools/device_flags.h"
#include "worker/quantized/runnable_model.h"

namespace flatfleet::tools {
namespace {

struct EvalPplOptions {
  std::string model_dir;
  std::string text_file;
  std::string tokenizer_path;
  int64_t window = 256;
  int64_t stride = 0;       // 0: the window (no overlap)
  int64_t max_windows = 0;  // 0: all
  bool bf16_rope = false;
  engine::DeviceOptions device;
};

// -log softmax(logits)[target] in double.
double NegativeLogLikelihood(const float* logits, int64_t vocab, int32_t target) {
  double max = logits[0];
  for (int64_t v = 1; v < vocab; ++v) max = std::max(max, static_cast<double>(logits[v]));
  double sum = 0.0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(logits[v]) - max);
  return std::log(sum) + max - logits[target];
}

absl::Status RunEvalPpl(const EvalPplOptions& options) {
  const int64_t window = options.window;
  const int64_t stride = options.stride == 0 ? window : options.stride;
  if (window < 2 || stride < 1 || stride > window) {
    return absl::InvalidArgumentError("need --window >= 2 and 1 <= --stride <= --window");
  }
  engine::ModelOptions model_options;
  model_options.bf16_rotary_frequencies = options.bf16_rope;
  FF_ASSIGN_OR_RETURN(engine::SelectedBackend selected,
                      tools::OpenDevice(options.device, "eval-ppl"));
  FF_ASSIGN_OR_RETURN(quant::RunnableModel runnable,
                      quant::LoadRunnableModel(options.model_dir, model_options, selected.backend));
  const engine::LlamaModel& model = *runnable.model;
  const ModelConfig& config = model.config();
  if (window > config.max_position_embeddings) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--window %d exceeds the model's max_position_embeddings %d", window,
                        config.max_position_embeddings));
  }
  std::string note;
  FF_ASSIGN_OR_RETURN(std::unique_ptr<tokenizer::Tokenizer> tok,
                      quant::LoadTokenizerOrBytes(options.model_dir, options.tokenizer_path,
                                                  config.vocab_size, &note));
  if (!note.empty()) std::fprintf(stderr, "eval-ppl: %s\n", note.c_str());
  std::ifstream in(options.text_file, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrFormat("cannot read %s", options.text_file));
  std::stringstream text;
  text << in.rdbuf();
  FF_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                      tok->Encode(text.str(), /*add_special_tokens=*/false));
  const int64_t n = static_cast<int64_t>(ids.size());
  if (n < 2) return absl::InvalidArgumentError("the text has fewer than 2 tokens");
  for (int32_t id : ids) {
    if (id < 0 || id >= config.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrFormat("token id %d is outside the model's vocabulary [0, %d): wrong tokenizer?",
                          id, config.vocab_size));
    }
  }
  int64_t total_windows = n <= window ? 1 : (n - window + stride - 1) / stride + 1;
  if (options.max_windows > 0) total_windows = std::min(total_windows, options.max_windows);
  std::fprintf(stderr,
               "eval-ppl: %s model on %s, %lld tokens, %lld windows of %lld (stride %lld)\n",
               runnable.Description().c_str(), std::string(model.backend().name()).c_str(),
               static_cast<long long>(n), static_cast<long long>(total_windows),
               static_cast<long long>(window), static_cast<long long>(stride));

  const auto start = std::chrono::steady_clock::now();
  double nll = 0.0;
  int64_t scored = 0;
  int64_t scored_until = 0;  // tokens before this index have been scored
  // One cache for every window (on a GPU its pool is one device allocation): each window is a
  // fresh sequence, removed after it.
  FF_ASSIGN_OR_RETURN(std::unique_ptr<engine::KvCache> cache,
                      model.CreateKvCache(std::min(n, window)));
  for (int64_t w = 0; w < total_windows; ++w) {
    const int64_t begin = w * stride;
    const int64_t end = std::min(n, begin + window);
    FF_ASSIGN_OR_RETURN(engine::SequenceId sequence, cache->AddSequence());
    const engine::SequenceChunk chunk{
        sequence, std::span<const int32_t>(ids).subspan(begin, end - begin), /*all_logits=*/true};
    FF_ASSIGN_OR_RETURN(Tensor logits, model.Forward({&chunk, 1}, *cache));
    for (int64_t target = std::max(begin + 1, scored_until); target < end; ++target) {
      nll += NegativeLogLikelihood(logits.row(target - begin - 1), config.vocab_size, ids[target]);
      ++scored;
    }
    scored_until = end;
    cache->RemoveSequence(sequence);
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "[%lld/%lld] tokens scored %lld  ppl %.4f  elapsed %.1fs  ETA %.1fs\n",
                 static_cast<long long>(w + 1), static_cast<long long>(total_windows),
                 static_cast<long long>(scored), std::exp(nll / scored), elapsed,
                 elapsed / (w + 1) * (total_windows - w - 1));
    if (end == n) break;
  }
  std::printf("model: %s (%s)\n", options.model_dir.c_str(), runnable.Description().c_str());
  std::printf("text: %s (%lld tokens; window %lld, stride %lld)\n", options.text_file.c_str(),
              static_cast<long long>(n), static_cast<long long>(window),
              static_cast<long long>(stride));
  std::printf("scored tokens: %lld\nmean NLL: %.6f nats\nperplexity: %.4f\n",
              static_cast<long long>(scored), nll / scored, std::exp(nll / scored));
  return absl::OkStatus();
}

}  // namespace

CommandRunner RegisterEvalPplCommand(CLI::App& app) {
  auto options = std::make_shared<EvalPplOptions>();
  CLI::App* cmd = app.add_subcommand(
      "eval-ppl",
      "Perplexity of a checkpoint (Hugging Face float or quantized directory) over windows of a "
      "tokenized text file. Progress per window on stderr, the result on stdout.");
  cmd->add_option("--model", options->model_dir, "Checkpoint directory")->required();
  cmd->add_option("--text", options->text_file, "Text file")->required()->check(CLI::ExistingFile);
  cmd->add_option("--tokenizer", options->tokenizer_path,
                  "Tokenizer (default: the model's, else bytes when the vocabulary allows)");
  cmd->add_option("--window", options->window, "Tokens per window")->capture_default_str();
  tools::AddDeviceFlags(cmd, &options->device);
  cmd->add_option("--stride", options->stride,
                  "Tokens between window starts (default: the window; smaller overlaps)");
  cmd->add_option("--max-windows", options->max_windows, "Stop after K windows (0: all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--bf16-rope", options->bf16_rope,
                "Round rotary frequencies to bf16 (as `score --bf16-rope`)");
  return [options] {
    absl::Status status = RunEvalPpl(*options);
    if (!status.ok()) {
      std::fprintf(stderr, "flatfleet eval-ppl: %s\n", std::string(status.message()).c_str());
      return 1;
    }
    return 0;
  };
}

}  // namespace flatfleet::tools
