// The Python methods templates call on values: str.strip/startswith/split/replace/upper/...,
// dict.items/keys/values/get. Methods that would mutate (list.append, dict.update) do not
// exist, as in transformers' immutable sandbox.
#pragma once

#include <optional>
#include <string_view>

#include "common/chat_template/value.h"

namespace flatfleet::chat_template {

class Evaluator;

// `object.name` as a callable bound to object, or nullopt when the type has no such method.
std::optional<Value> BoundMethod(Evaluator& evaluator, const Value& object, std::string_view name);

}  // namespace flatfleet::chat_template
