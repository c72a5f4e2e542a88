#include "coordinator/server/model_spec.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace flatfleet::coordinator {
namespace {

// The demo model is tiny; a few MiB stands for its weights in planning.
constexpr uint64_t kDemoModelBytes = 8ull << 20;

}  // namespace

absl::StatusOr<ModelSpec> ParseModelSpec(std::string_view flag) {
  if (flag == kBuiltinDemoModel) return ModelSpec{"demo", std::string(kBuiltinDemoModel)};
  const size_t equals = flag.find('=');
  if (equals == std::string_view::npos || equals == 0 || equals + 1 == flag.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--model must be NAME=DIR or NAME=builtin:demo, got '", std::string(flag), "'"));
  }
  return ModelSpec{std::string(flag.substr(0, equals)), std::string(flag.substr(equals + 1))};
}

absl::StatusOr<uint64_t> ModelWeightBytes(const ModelSpec& model) {
  if (model.path == kBuiltinDemoModel) return kDemoModelBytes;
  namespace fs = std::filesystem;
  std::error_code error;
  if (!fs::is_regular_file(fs::path(model.path) / "config.json", error)) {
    return absl::NotFoundError(
        absl::StrCat("model '", model.name, "': no config.json in ", model.path));
  }
  uint64_t bytes = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(model.path, error)) {
    if (entry.path().extension() == ".safetensors" && entry.is_regular_file(error)) {
      bytes += entry.file_size(error);
    }
  }
  if (error) {
    return absl::InternalError(absl::StrCat("model '", model.name, "': ", error.message()));
  }
  if (bytes == 0) {
    return absl::NotFoundError(
        absl::StrCat("model '", model.name, "': no .safetensors files in ", model.path));
  }
  return bytes;
}

}  // namespace flatfleet::coordinator
