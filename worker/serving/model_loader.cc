#include "worker/serving/model_loader.h"

#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_backend.h"
#include "quant/checkpoint/quantized_checkpoint.h"
#include "worker/model/demo_model.h"

namespace flatfleet::engine {
namespace {

absl::StatusOr<LoadedModel> LoadCheckpoint(const std::string& dir) {
  std::error_code error;
  if (!std::filesystem::is_directory(dir, error)) {
    return absl::NotFoundError(absl::StrCat("model directory '", dir, "' does not exist (or is ",
                                            "not a directory); use a checkpoint directory or '",
                                            std::string(kBuiltinDemoModel), "'"));
  }
  LoadedModel loaded;
  if (quant::IsQuantizedCheckpoint(dir)) {
    absl::StatusOr<quant::LoadedQuantizedModel> quantized = quant::LoadQuantizedLlamaModel(dir);
    if (!quantized.ok()) {
      return absl::Status(
          quantized.status().code(),
          absl::StrCat("cannot load quantized model '", dir, "': ", quantized.status().message()));
    }
    loaded.backend = std::move(quantized->backend);
    loaded.model = std::move(quantized->model);
  } else {
    absl::StatusOr<std::unique_ptr<LlamaModel>> model =
        LoadLlamaModel(dir, kernels::cpu::DefaultCpuBackend());
    if (!model.ok()) {
      return absl::Status(model.status().code(), absl::StrCat("cannot load model '", dir,
                                                              "': ", model.status().message()));
    }
    loaded.model = *std::move(model);
  }
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok = tokenizer::LoadTokenizer(dir);
  if (tok.ok()) {
    loaded.tokenizer = *std::move(tok);
  } else if (loaded.model->config().vocab_size >= tokenizer::MakeByteTokenizer()->vocab_size()) {
    // Test checkpoints often ship without a tokenizer; bytes are still valid ids for them.
    loaded.tokenizer = tokenizer::MakeByteTokenizer();
  } else {
    return absl::Status(tok.status().code(), absl::StrCat("cannot load the tokenizer of '", dir,
                                                          "': ", tok.status().message()));
  }
  return loaded;
}

}  // namespace

ModelLoader SingleRankModelLoader() {
  return [](const v1::LoadShardRequest& request) -> absl::StatusOr<LoadedModel> {
    if (request.tp_size() > 1) {
      return absl::UnimplementedError(absl::StrCat(
          "tp_size ", request.tp_size(), " requested: this worker loads whole models only ",
          "(tensor parallelism is not available yet); use tp_size 1"));
    }
    if (request.model_path().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model_path is empty; give a checkpoint directory or '",
                       std::string(kBuiltinDemoModel), "'"));
    }
    if (request.model_path() == kBuiltinDemoModel) {
      absl::StatusOr<std::unique_ptr<LlamaModel>> demo =
          MakeDemoModel(kernels::cpu::DefaultCpuBackend());
      if (!demo.ok()) return demo.status();
      LoadedModel loaded;
      loaded.model = *std::move(demo);
      loaded.tokenizer = tokenizer::MakeByteTokenizer();
      return loaded;
    }
    return LoadCheckpoint(request.model_path());
  };
}

}  // namespace flatfleet::engine
