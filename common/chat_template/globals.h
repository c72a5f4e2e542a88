// The global functions templates call: range, namespace, dict, raise_exception (transformers':
// fails the render with the template's message) and strftime_now (transformers': the current
// local time formatted with strftime).
#pragma once

#include "absl/container/flat_hash_map.h"
#include "common/chat_template/value.h"

namespace flatfleet::chat_template {

class Evaluator;

void AddGlobals(Evaluator& evaluator, absl::flat_hash_map<std::string, Value>& globals);

}  // namespace flatfleet::chat_template
