// Jinja's tests (`x is defined`, `x is string`, `x is equalto y`, ...).
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/chat_template/value.h"

namespace flatfleet::chat_template {

class Evaluator;

absl::StatusOr<bool> RunTest(Evaluator& evaluator, std::string_view name, const Value& value,
                             const std::vector<Value>& arguments);

}  // namespace flatfleet::chat_template
