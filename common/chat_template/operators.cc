#include "common/chat_template/operators.h"

#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template/python_text.h"
#include "common/chat_template/value_format.h"

namespace flatfleet::chat_template {
namespace {

absl::Status UnsupportedOperands(std::string_view op, const Value& left, const Value& right) {
  return absl::InvalidArgumentError(absl::StrCat("unsupported operand type(s) for ",
                                                 std::string(op), ": '", left.TypeName(), "' and '",
                                                 right.TypeName(), "'"));
}

absl::Status IntegerOverflow() {
  return absl::OutOfRangeError("integer result does not fit in 64 bits");
}

absl::StatusOr<Value> Repeat(const Value& sequence, int64_t times, WorkBudget& budget) {
  if (times < 0) times = 0;
  if (sequence.is_string()) {
    const std::string& text = sequence.string_value();
    if (!text.empty() && static_cast<uint64_t>(times) > budget.limits().max_string_bytes) {
      return budget.ChargeString(budget.limits().max_string_bytes + 1);
    }
    absl::Status charged = budget.ChargeString(text.size() * static_cast<size_t>(times));
    if (!charged.ok()) return charged;
    std::string out;
    out.reserve(text.size() * times);
    for (int64_t i = 0; i < times; ++i) out += text;
    return Value::String(std::move(out));
  }
  const ValueList& items = sequence.list();
  if (!items.empty() && static_cast<uint64_t>(times) > budget.limits().max_list_items) {
    return budget.ChargeItems(budget.limits().max_list_items + 1);
  }
  absl::Status charged = budget.ChargeItems(items.size() * static_cast<size_t>(times));
  if (!charged.ok()) return charged;
  ValueList out;
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), items.begin(), items.end());
  return Value::List(std::move(out));
}

// Python's floor division and modulo on integers.
int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t FloorMod(int64_t a, int64_t b) {
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

absl::StatusOr<Value> Arithmetic(std::string_view op, const Value& left, const Value& right) {
  if (!left.is_number() || !right.is_number()) return UnsupportedOperands(op, left, right);
  const bool integral = left.is_integral() && right.is_integral();
  if (op == "/") {
    if (right.AsDouble() == 0) return absl::InvalidArgumentError("division by zero");
    return Value::Float(left.AsDouble() / right.AsDouble());
  }
  if (integral) {
    int64_t a = left.int_value();
    int64_t b = right.int_value();
    int64_t result;
    if (op == "+") {
      if (__builtin_add_overflow(a, b, &result)) return IntegerOverflow();
    } else if (op == "-") {
      if (__builtin_sub_overflow(a, b, &result)) return IntegerOverflow();
    } else if (op == "*") {
      if (__builtin_mul_overflow(a, b, &result)) return IntegerOverflow();
    } else if (op == "//" || op == "%") {
      if (b == 0) return absl::InvalidArgumentError("integer division or modulo by zero");
      if (a == std::numeric_limits<int64_t>::min() && b == -1) return IntegerOverflow();
      result = op == "//" ? FloorDiv(a, b) : FloorMod(a, b);
    } else {  // **
      if (b < 0) return Value::Float(std::pow(static_cast<double>(a), static_cast<double>(b)));
      result = 1;
      for (int64_t i = 0; i < b; ++i) {
        if (__builtin_mul_overflow(result, a, &result)) return IntegerOverflow();
        if (result == 0 || result == 1) break;
        if (result == -1) {
          result = (b - i - 1) % 2 == 0 ? -1 : 1;
          break;
        }
      }
    }
    return Value::Int(result);
  }
  double a = left.AsDouble();
  double b = right.AsDouble();
  if (op == "+") return Value::Float(a + b);
  if (op == "-") return Value::Float(a - b);
  if (op == "*") return Value::Float(a * b);
  if (op == "**") return Value::Float(std::pow(a, b));
  if (b == 0) return absl::InvalidArgumentError("float division or modulo by zero");
  if (op == "//") return Value::Float(std::floor(a / b));
  double r = std::fmod(a, b);
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return Value::Float(r);
}

absl::StatusOr<int> Order(const Value& left, const Value& right, std::string_view op);

absl::StatusOr<int> OrderLists(const ValueList& a, const ValueList& b, std::string_view op) {
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (ValuesEqual(a[i], b[i])) continue;
    return Order(a[i], b[i], op);
  }
  return a.size() < b.size() ? -1 : a.size() > b.size() ? 1 : 0;
}

absl::StatusOr<int> Order(const Value& left, const Value& right, std::string_view op) {
  if (left.is_undefined()) return UndefinedError(left);
  if (right.is_undefined()) return UndefinedError(right);
  if (left.is_number() && right.is_number()) {
    if (left.is_float() || right.is_float()) {
      double a = left.AsDouble();
      double b = right.AsDouble();
      return a < b ? -1 : a > b ? 1 : 0;
    }
    return left.int_value() < right.int_value() ? -1 : left.int_value() > right.int_value();
  }
  if (left.is_string() && right.is_string()) {
    // UTF-8 byte order is code point order.
    int c = left.string_value().compare(right.string_value());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (left.is_list() && right.is_list()) return OrderLists(left.list(), right.list(), op);
  return absl::InvalidArgumentError(
      absl::StrCat("'", std::string(op), "' not supported between instances of '", left.TypeName(),
                   "' and '", right.TypeName(), "'"));
}

int64_t NormalizeIndex(int64_t index, int64_t size) { return index < 0 ? index + size : index; }

}  // namespace

absl::Status UndefinedError(const Value& undefined) {
  return absl::InvalidArgumentError(
      absl::StrCat("'", undefined.undefined_name(), "' is undefined"));
}

absl::StatusOr<Value> ApplyBinary(std::string_view op, const Value& left, const Value& right,
                                  WorkBudget& budget) {
  if (op == "~") {
    std::string out = ToPythonStr(left);
    out += ToPythonStr(right);
    if (absl::Status s = budget.ChargeString(out.size()); !s.ok()) return s;
    return Value::String(std::move(out));
  }
  if (left.is_undefined()) return UndefinedError(left);
  if (right.is_undefined()) return UndefinedError(right);
  if (op == "+") {
    if (left.is_string() && right.is_string()) {
      size_t size = left.string_value().size() + right.string_value().size();
      if (absl::Status s = budget.ChargeString(size); !s.ok()) return s;
      return Value::String(absl::StrCat(left.string_value(), right.string_value()));
    }
    if (left.is_list() && right.is_list()) {
      if (absl::Status s = budget.ChargeItems(left.list().size() + right.list().size()); !s.ok()) {
        return s;
      }
      ValueList out = left.list();
      out.insert(out.end(), right.list().begin(), right.list().end());
      return Value::List(std::move(out));
    }
    if (left.is_string() || right.is_string()) {
      return absl::InvalidArgumentError(
          left.is_string()
              ? absl::StrCat("can only concatenate str (not \"", right.TypeName(), "\") to str")
              : absl::StrCat("unsupported operand type(s) for +: '", left.TypeName(),
                             "' and 'str'"));
    }
  }
  if (op == "*") {
    if ((left.is_string() || left.is_list()) && right.is_integral()) {
      return Repeat(left, right.int_value(), budget);
    }
    if (left.is_integral() && (right.is_string() || right.is_list())) {
      return Repeat(right, left.int_value(), budget);
    }
  }
  if (op == "%" && left.is_string()) {
    return absl::UnimplementedError("printf-style string formatting ('...' % x) is not supported");
  }
  return Arithmetic(op, left, right);
}

absl::StatusOr<bool> Contains(const Value& haystack, const Value& needle) {
  switch (haystack.kind()) {
    case Value::Kind::kString:
      if (!needle.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat("'in <string>' requires string as left operand, not ", needle.TypeName()));
      }
      return absl::StrContains(haystack.string_value(), needle.string_value());
    case Value::Kind::kList:
      for (const Value& item : haystack.list()) {
        if (ValuesEqual(item, needle)) return true;
      }
      return false;
    case Value::Kind::kDict:
    case Value::Kind::kNamespace:
      return needle.is_string() && haystack.dict().Find(needle.string_value()) != nullptr;
    case Value::Kind::kUndefined:
      return false;  // Jinja's Undefined iterates as empty
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("argument of type '", haystack.TypeName(), "' is not iterable"));
  }
}

absl::StatusOr<bool> ApplyCompare(std::string_view op, const Value& left, const Value& right) {
  if (op == "==") return ValuesEqual(left, right);
  if (op == "!=") return !ValuesEqual(left, right);
  if (op == "in") return Contains(right, left);
  if (op == "not in") {
    absl::StatusOr<bool> in = Contains(right, left);
    if (!in.ok()) return in.status();
    return !*in;
  }
  absl::StatusOr<int> order = Order(left, right, op);
  if (!order.ok()) return order.status();
  if (op == "<") return *order < 0;
  if (op == "<=") return *order <= 0;
  if (op == ">") return *order > 0;
  return *order >= 0;
}

std::optional<Value> IndexSequence(const Value& sequence, const Value& index) {
  if (!index.is_integral() || sequence.is_generator()) return std::nullopt;
  if (sequence.is_list()) {
    const int64_t size = static_cast<int64_t>(sequence.list().size());
    int64_t i = NormalizeIndex(index.int_value(), size);
    if (i < 0 || i >= size) return std::nullopt;
    return sequence.list()[i];
  }
  if (sequence.is_string()) {
    std::vector<std::string_view> points = CodePoints(sequence.string_value());
    const int64_t size = static_cast<int64_t>(points.size());
    int64_t i = NormalizeIndex(index.int_value(), size);
    if (i < 0 || i >= size) return std::nullopt;
    return Value::String(std::string(points[i]));
  }
  return std::nullopt;
}

absl::StatusOr<Value> SliceSequence(const Value& sequence, const Value& start_value,
                                    const Value& stop_value, const Value& step_value,
                                    WorkBudget& budget) {
  auto bound = [](const Value& v) -> absl::StatusOr<std::optional<int64_t>> {
    if (v.is_undefined() || v.is_none()) return std::optional<int64_t>();
    if (!v.is_integral()) {
      return absl::InvalidArgumentError(
          "slice indices must be integers or None or have an __index__ method");
    }
    return std::optional<int64_t>(v.int_value());
  };
  absl::StatusOr<std::optional<int64_t>> start = bound(start_value);
  absl::StatusOr<std::optional<int64_t>> stop = bound(stop_value);
  absl::StatusOr<std::optional<int64_t>> step_opt = bound(step_value);
  if (!start.ok()) return start.status();
  if (!stop.ok()) return stop.status();
  if (!step_opt.ok()) return step_opt.status();
  const int64_t step = step_opt->value_or(1);
  if (step == 0) return absl::InvalidArgumentError("slice step cannot be zero");

  std::vector<std::string_view> points;
  int64_t size;
  if (sequence.is_generator()) {
    return absl::InvalidArgumentError("'generator' object is not subscriptable");
  } else if (sequence.is_list()) {
    size = static_cast<int64_t>(sequence.list().size());
  } else if (sequence.is_string()) {
    points = CodePoints(sequence.string_value());
    size = static_cast<int64_t>(points.size());
  } else if (sequence.is_undefined()) {
    return UndefinedError(sequence);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("'", sequence.TypeName(), "' object is not subscriptable"));
  }
  // Python's PySlice_AdjustIndices.
  auto adjust = [&](std::optional<int64_t> v, int64_t if_missing) {
    if (!v) return if_missing;
    int64_t i = *v;
    if (i < 0) {
      i += size;
      if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= size) {
      i = step < 0 ? size - 1 : size;
    }
    return i;
  };
  int64_t first = adjust(*start, step < 0 ? size - 1 : 0);
  int64_t last = adjust(*stop, step < 0 ? -1 : size);
  std::vector<int64_t> picks;
  if (step > 0) {
    for (int64_t i = first; i < last; i += step) picks.push_back(i);
  } else {
    for (int64_t i = first; i > last; i += step) picks.push_back(i);
  }
  if (sequence.is_list()) {
    if (absl::Status s = budget.ChargeItems(picks.size()); !s.ok()) return s;
    ValueList out;
    out.reserve(picks.size());
    for (int64_t i : picks) out.push_back(sequence.list()[i]);
    return Value::List(std::move(out));
  }
  std::string out;
  for (int64_t i : picks) out += points[i];
  if (absl::Status s = budget.ChargeString(out.size()); !s.ok()) return s;
  return Value::String(std::move(out));
}

absl::StatusOr<ValueList> IterateValue(const Value& value, WorkBudget& budget) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return ValueList{};
    case Value::Kind::kList:
      return value.list();
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: {
      ValueList keys;
      for (const auto& [key, unused] : value.dict().entries()) keys.push_back(Value::String(key));
      return keys;
    }
    case Value::Kind::kString: {
      ValueList chars;
      for (std::string_view point : CodePoints(value.string_value())) {
        chars.push_back(Value::String(std::string(point)));
      }
      if (absl::Status s = budget.ChargeItems(chars.size()); !s.ok()) return s;
      return chars;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("'", value.TypeName(), "' object is not iterable"));
  }
}

absl::StatusOr<int64_t> ValueLength(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return 0;
    case Value::Kind::kString:
      return static_cast<int64_t>(CodePointCount(value.string_value()));
    case Value::Kind::kList:
      if (value.is_generator()) {
        return absl::InvalidArgumentError("object of type 'generator' has no len()");
      }
      return static_cast<int64_t>(value.list().size());
    case Value::Kind::kDict:
      return static_cast<int64_t>(value.dict().size());
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("object of type '", value.TypeName(), "' has no len()"));
  }
}

}  // namespace flatfleet::chat_template
