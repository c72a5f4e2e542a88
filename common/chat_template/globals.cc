#include "common/chat_template/globals.h"

#include <ctime>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template/evaluator.h"
#include "common/chat_template/value_format.h"

namespace flatfleet::chat_template {
namespace {

absl::StatusOr<Value> Range(Evaluator& evaluator, CallArgs& args) {
  if (!args.keyword.empty())
    return absl::InvalidArgumentError("range() takes no keyword arguments");
  std::vector<int64_t> bounds;
  for (const Value& v : args.positional) {
    if (!v.is_integral()) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", v.TypeName(), "' object cannot be interpreted as an integer"));
    }
    bounds.push_back(v.int_value());
  }
  int64_t start = 0, stop = 0, step = 1;
  if (bounds.size() == 1) {
    stop = bounds[0];
  } else if (bounds.size() == 2 || bounds.size() == 3) {
    start = bounds[0];
    stop = bounds[1];
    if (bounds.size() == 3) step = bounds[2];
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("range expected 1 to 3 arguments, got ", bounds.size()));
  }
  if (step == 0) return absl::InvalidArgumentError("range() arg 3 must not be zero");
  // Count first, so a huge range is refused before anything is built.
  __int128 span =
      step > 0 ? static_cast<__int128>(stop) - start : static_cast<__int128>(start) - stop;
  __int128 magnitude = step > 0 ? step : -static_cast<__int128>(step);
  __int128 count = span <= 0 ? 0 : (span + magnitude - 1) / magnitude;
  const size_t limit = evaluator.budget().limits().max_list_items;
  absl::Status charged = evaluator.budget().ChargeItems(
      count > static_cast<__int128>(limit) ? limit + 1 : static_cast<size_t>(count));
  if (!charged.ok()) return charged;
  ValueList items;
  items.reserve(static_cast<size_t>(count));
  for (__int128 i = 0; i < count; ++i) {
    items.push_back(Value::Int(static_cast<int64_t>(start + i * step)));
  }
  return Value::List(std::move(items));
}

absl::StatusOr<ValueDict> KeywordDict(const char* function, CallArgs& args) {
  ValueDict dict;
  if (args.positional.size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(function, "() takes at most 1 positional argument"));
  }
  if (args.positional.size() == 1) {
    const Value& initial = args.positional[0];
    if (!initial.is_dict() && !initial.is_namespace()) {
      return absl::InvalidArgumentError(
          absl::StrCat(function, "() needs a mapping, not '", initial.TypeName(), "'"));
    }
    for (const auto& [key, value] : initial.dict().entries()) dict.Set(key, value);
  }
  for (auto& [key, value] : args.keyword) dict.Set(key, value);
  return dict;
}

absl::StatusOr<Value> StrftimeNow(Evaluator& evaluator, CallArgs& args) {
  if (args.positional.size() != 1 || !args.positional[0].is_string()) {
    return absl::InvalidArgumentError("strftime_now() takes one format string");
  }
  const std::string& format = args.positional[0].string_value();
  if (format.empty()) return Value::String("");
  std::tm now = evaluator.Now();
  // strftime returns 0 both for "too small" and for an empty result; grow a few times.
  for (size_t size = 256; size <= (size_t{1} << 16); size *= 4) {
    std::string out(size + format.size() * 8, '\0');
    size_t written = std::strftime(out.data(), out.size(), format.c_str(), &now);
    if (written > 0) {
      out.resize(written);
      return Value::String(std::move(out));
    }
  }
  return Value::String("");
}

}  // namespace

void AddGlobals(Evaluator& evaluator, absl::flat_hash_map<std::string, Value>& globals) {
  Evaluator* ev = &evaluator;
  globals["range"] = Value::Function("range", [ev](CallArgs& args) { return Range(*ev, args); });
  globals["namespace"] = Value::Function("namespace", [](CallArgs& args) -> absl::StatusOr<Value> {
    absl::StatusOr<ValueDict> dict = KeywordDict("namespace", args);
    if (!dict.ok()) return dict.status();
    return Value::Namespace(*std::move(dict));
  });
  globals["dict"] = Value::Function("dict", [](CallArgs& args) -> absl::StatusOr<Value> {
    absl::StatusOr<ValueDict> dict = KeywordDict("dict", args);
    if (!dict.ok()) return dict.status();
    return Value::Dict(*std::move(dict));
  });
  globals["raise_exception"] =
      Value::Function("raise_exception", [](CallArgs& args) -> absl::StatusOr<Value> {
        std::string message = args.positional.empty() ? "" : ToPythonStr(args.positional[0]);
        absl::Status raised = absl::InvalidArgumentError(message);
        raised.SetPayload(kRaisedByTemplatePayload, absl::Cord("1"));
        return raised;
      });
  globals["strftime_now"] =
      Value::Function("strftime_now", [ev](CallArgs& args) { return StrftimeNow(*ev, args); });
}

}  // namespace flatfleet::chat_template
