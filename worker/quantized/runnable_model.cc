#include "worker/quantized/runnable_model.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kernels/cpu/cpu_backend.h"

namespace flatfleet::quant {

std::string RunnableModel::Description() const {
  return quantized() ? absl::StrFormat("quantized (recipe %s)", manifest->recipe.name)
                     : std::string("float32");
}

absl::StatusOr<RunnableModel> LoadRunnableModel(const std::filesystem::path& dir,
                                                engine::ModelOptions options,
                                                kernels::Backend* float_backend) {
  RunnableModel runnable;
  if (IsQuantizedCheckpoint(dir)) {
    const bool device =
        float_backend != nullptr && float_backend->memory() == runtime::MemoryKind::kDevice;
    FF_ASSIGN_OR_RETURN(LoadedQuantizedModel loaded,
                        LoadQuantizedLlamaModel(dir, options, device ? float_backend : nullptr));
    runnable.manifest = std::move(loaded.manifest);
    runnable.backend = std::move(loaded.backend);
    runnable.model = std::move(loaded.model);
    return runnable;
  }
  FF_ASSIGN_OR_RETURN(
      runnable.model,
      engine::LoadLlamaModel(
          dir, float_backend != nullptr ? *float_backend : kernels::cpu::DefaultCpuBackend(),
          options));
  return runnable;
}

absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> LoadTokenizerOrBytes(
    const std::filesystem::path& model_dir, const std::string& tokenizer_path, int64_t vocab_size,
    std::string* note) {
  const std::filesystem::path path =
      tokenizer_path.empty() ? model_dir : std::filesystem::path(tokenizer_path);
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> loaded = tokenizer::LoadTokenizer(path);
  if (loaded.ok() || !tokenizer_path.empty()) return loaded;
  std::unique_ptr<tokenizer::Tokenizer> bytes = tokenizer::MakeByteTokenizer();
  if (vocab_size < bytes->vocab_size()) return loaded.status();
  if (note != nullptr) {
    *note = absl::StrFormat("no tokenizer in %s (%s); using the byte tokenizer", path.string(),
                            loaded.status().message());
  }
  return bytes;
}

}  // namespace flatfleet::quant
