// A model the coordinator serves: the name clients use and where workers load it from.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace flatfleet::coordinator {

// The worker's built-in toy model, loadable without files.
inline constexpr std::string_view kBuiltinDemoModel = "builtin:demo";

struct ModelSpec {
  std::string name;
  std::string path;  // A model directory, or kBuiltinDemoModel.
  // --chat-template's Jinja source, sent to the workers with LoadShard; empty: the model's own.
  std::string chat_template = "";
};

// "NAME=DIR" or "NAME=builtin:demo"; a bare "builtin:demo" is named "demo".
absl::StatusOr<ModelSpec> ParseModelSpec(std::string_view flag);

}  // namespace flatfleet::coordinator
