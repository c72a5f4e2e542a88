// Jinja's filters (`x | trim`, `x | tojson(indent=4)`, `xs | selectattr("role", "equalto",
// "user") | list`, ...), tojson as transformers defines it.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "common/chat_template/value.h"

namespace flatfleet::chat_template {

class Evaluator;

absl::StatusOr<Value> RunFilter(Evaluator& evaluator, std::string_view name, const Value& input,
                                CallArgs& args);

}  // namespace flatfleet::chat_template
