#include "common/chat_template/value_tests.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template/operators.h"
#include "common/chat_template/python_text.h"
#include "common/chat_template/value_format.h"

namespace flatfleet::chat_template {

absl::StatusOr<bool> RunTest(Evaluator& evaluator, std::string_view name, const Value& value,
                             const std::vector<Value>& arguments) {
  auto need_argument = [&]() -> absl::Status {
    if (arguments.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("test '", std::string(name), "' needs an argument"));
    }
    return absl::OkStatus();
  };
  if (name == "defined") return !value.is_undefined();
  if (name == "undefined") return value.is_undefined();
  if (name == "none") return value.is_none();
  if (name == "boolean") return value.is_bool();
  if (name == "true") return value.is_bool() && value.bool_value();
  if (name == "false") return value.is_bool() && !value.bool_value();
  if (name == "integer") return value.is_int();
  if (name == "float") return value.is_float();
  if (name == "number") return value.is_number();
  if (name == "string") return value.is_string();
  if (name == "mapping") return value.is_dict();
  if (name == "iterable") {
    return value.is_undefined() || value.is_string() || value.is_list() || value.is_dict() ||
           value.is_namespace();
  }
  if (name == "sequence") return value.is_string() || value.is_list() || value.is_dict();
  if (name == "callable") return value.is_callable();
  if (name == "lower" || name == "upper") {
    // Jinja: str(value).islower() / isupper(): some cased character, none of the other case.
    const std::string text = ToPythonStr(value);
    const std::string lower = PythonLower(text);
    const std::string upper = PythonUpper(text);
    return name == "lower" ? (lower == text && upper != text) : (upper == text && lower != text);
  }
  if (name == "odd" || name == "even") {
    if (value.is_float()) {  // Python: 2.0 % 2 == 0
      return (std::fmod(value.float_value(), 2.0) != 0) == (name == "odd");
    }
    if (!value.is_integral()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "test '", std::string(name), "' needs a number, not '", value.TypeName(), "'"));
    }
    return (value.int_value() % 2 != 0) == (name == "odd");
  }
  if (name == "divisibleby") {
    if (absl::Status s = need_argument(); !s.ok()) return s;
    if (!value.is_integral() || !arguments[0].is_integral() || arguments[0].int_value() == 0) {
      return absl::InvalidArgumentError("test 'divisibleby' needs non-zero integers");
    }
    return value.int_value() % arguments[0].int_value() == 0;
  }
  if (name == "sameas") {
    if (absl::Status s = need_argument(); !s.ok()) return s;
    const Value& other = arguments[0];
    // Python's `is`: None, True and False are singletons; other values compare by identity,
    // which for immutable scalars is value equality in practice.
    if (value.kind() != other.kind()) return false;
    return ValuesEqual(value, other);
  }
  static constexpr std::pair<std::string_view, std::string_view> kComparisons[] = {
      {"equalto", "=="}, {"eq", "=="}, {"==", "=="},      {"ne", "!="},
      {"!=", "!="},      {"lt", "<"},  {"lessthan", "<"}, {"<", "<"},
      {"le", "<="},      {"<=", "<="}, {"gt", ">"},       {"greaterthan", ">"},
      {">", ">"},        {"ge", ">="}, {">=", ">="},      {"in", "in"}};
  for (const auto& [test, op] : kComparisons) {
    if (name == test) {
      if (absl::Status s = need_argument(); !s.ok()) return s;
      return ApplyCompare(op, value, arguments[0]);
    }
  }
  (void)evaluator;
  return absl::InvalidArgumentError(absl::StrCat("no test named '", std::string(name), "'"));
}

}  // namespace flatfleet::chat_template
