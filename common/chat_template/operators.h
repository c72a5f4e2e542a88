// Python's operators on template values: arithmetic, concatenation, comparison, membership,
// indexing and slicing, with Python's errors for unsupported operand types.
#pragma once

#include <optional>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/chat_template/render_limits.h"
#include "common/chat_template/value.h"

namespace flatfleet::chat_template {

// op is one of + - * / // % ** ~.
absl::StatusOr<Value> ApplyBinary(std::string_view op, const Value& left, const Value& right,
                                  WorkBudget& budget);
// op is one of == != < <= > >= in "not in".
absl::StatusOr<bool> ApplyCompare(std::string_view op, const Value& left, const Value& right);
// `needle in haystack`.
absl::StatusOr<bool> Contains(const Value& haystack, const Value& needle);

// x[index] for lists and strings (negative indices count from the end); nullopt when out of
// range or not applicable (the template then sees undefined).
std::optional<Value> IndexSequence(const Value& sequence, const Value& index);
// x[start:stop:step] with Python's clamping; undefined or None bounds are omitted ones.
absl::StatusOr<Value> SliceSequence(const Value& sequence, const Value& start, const Value& stop,
                                    const Value& step, WorkBudget& budget);

// The items a for loop or filter iterates: list items, dict keys, string code points.
// Undefined iterates as empty; other values are not iterable.
absl::StatusOr<ValueList> IterateValue(const Value& value, WorkBudget& budget);

// len(value); undefined has length 0.
absl::StatusOr<int64_t> ValueLength(const Value& value);

// The error for an operation on an undefined value.
absl::Status UndefinedError(const Value& undefined);

}  // namespace flatfleet::chat_template
