#include "coordinator/server/model_spec.h"

#include "absl/strings/str_cat.h"

namespace flatfleet::coordinator {

absl::StatusOr<ModelSpec> ParseModelSpec(std::string_view flag) {
  if (flag == kBuiltinDemoModel) return ModelSpec{"demo", std::string(kBuiltinDemoModel)};
  const size_t equals = flag.find('=');
  if (equals == std::string_view::npos || equals == 0 || equals + 1 == flag.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--model must be NAME=DIR or NAME=builtin:demo, got '", std::string(flag), "'"));
  }
  return ModelSpec{std::string(flag.substr(0, equals)), std::string(flag.substr(equals + 1))};
}

}  // namespace flatfleet::coordinator
