#include "common/chat_template/filters.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/chat_template/evaluator.h"
#include "common/chat_template/json_conversion.h"
#include "common/chat_template/operators.h"
#include "common/chat_template/python_text.h"
#include "common/chat_template/value_format.h"
#include "common/status_macros.h"

namespace flatfleet::chat_template {
namespace {

Value Arg(const CallArgs& args, size_t index, std::string_view name) {
  for (const auto& [key, value] : args.keyword) {
    if (key == name) return value;
  }
  return index < args.positional.size() ? args.positional[index] : Value();
}

absl::StatusOr<Value> MakeString(Evaluator& ev, std::string text) {
  FF_RETURN_IF_ERROR(ev.budget().ChargeString(text.size()));
  return Value::String(std::move(text));
}

// Jinja's make_attrgetter: "a.b.0" looks up a, then b, then item 0.
absl::StatusOr<Value> GetPath(Evaluator& ev, const Value& item, const Value& path) {
  if (path.is_integral()) return ev.GetItem(item, path);
  if (!path.is_string()) return absl::InvalidArgumentError("attribute must be a string");
  Value current = item;
  for (absl::string_view part : absl::StrSplit(path.string_value(), '.')) {
    int64_t index;
    Value key =
        absl::SimpleAtoi(part, &index) ? Value::Int(index) : Value::String(std::string(part));
    FF_ASSIGN_OR_RETURN(current, ev.GetItem(current, key));
  }
  return current;
}

// Jinja's title filter (not str.title()): words start after runs of whitespace or -({[<;
// each word's first character is upper-cased and the rest lower-cased.
std::string JinjaTitle(const std::string& text) {
  std::string out;
  size_t pos = 0;
  bool word_start = true;
  while (pos < text.size()) {
    size_t length;
    const bool separator = IsPythonWhitespaceAt(text, pos, &length) ||
                           std::string_view("-({[<").find(text[pos]) != std::string_view::npos;
    if (separator) {
      out.append(text, pos, length);
      word_start = true;
    } else {
      std::string_view point(text.data() + pos, length);
      out += word_start ? PythonUpper(point) : PythonLower(point);
      word_start = false;
    }
    pos += length;
  }
  return out;
}

// Jinja's wordcount: matches of \w+ (letters, digits, underscore; any non-ASCII code point
// that is not whitespace counts as a letter here).
int64_t JinjaWordCount(const std::string& text) {
  int64_t words = 0;
  bool in_word = false;
  for (size_t pos = 0; pos < text.size();) {
    size_t length;
    const bool space = IsPythonWhitespaceAt(text, pos, &length);
    const unsigned char c = text[pos];
    const bool word_char = !space && (c >= 0x80 || absl::ascii_isalnum(c) || c == '_');
    if (word_char && !in_word) ++words;
    in_word = word_char;
    pos += length;
  }
  return words;
}

absl::StatusOr<Value> Tojson(Evaluator& ev, const Value& input, CallArgs& args) {
  JsonDumpOptions options;
  // transformers' signature: tojson(x, ensure_ascii=False, indent=None, separators=None,
  // sort_keys=False).
  options.ensure_ascii = Arg(args, 0, "ensure_ascii").Truthy();
  Value indent = Arg(args, 1, "indent");
  if (indent.is_integral()) {
    options.indent = static_cast<int>(std::clamp<int64_t>(indent.int_value(), -1, 64));
  } else if (indent.is_string()) {
    options.indent = 0;
    options.indent_text = indent.string_value().substr(0, 64);
  } else if (!indent.is_undefined() && !indent.is_none()) {
    return absl::InvalidArgumentError("tojson: indent must be an integer or a string");
  }
  Value separators = Arg(args, 2, "separators");
  if (separators.is_list() && separators.list().size() == 2 && separators.list()[0].is_string() &&
      separators.list()[1].is_string()) {
    options.item_separator = separators.list()[0].string_value();
    options.key_separator = separators.list()[1].string_value();
  } else if (!separators.is_undefined() && !separators.is_none()) {
    return absl::InvalidArgumentError("tojson: separators must be a pair of strings");
  }
  options.sort_keys = Arg(args, 3, "sort_keys").Truthy();
  FF_ASSIGN_OR_RETURN(std::string json, DumpJson(input, options));
  return MakeString(ev, std::move(json));
}

// select/reject/selectattr/rejectattr: keep items whose test (default: truthiness) is `keep`.
absl::StatusOr<Value> SelectItems(Evaluator& ev, const Value& input, CallArgs& args,
                                  bool by_attribute, bool keep) {
  FF_ASSIGN_OR_RETURN(ValueList items, IterateValue(input, ev.budget()));
  size_t next = 0;
  Value attribute;
  if (by_attribute) {
    if (args.positional.empty()) return absl::InvalidArgumentError("missing attribute name");
    attribute = args.positional[next++];
  }
  std::string test;
  if (next < args.positional.size()) {
    if (!args.positional[next].is_string()) {
      return absl::InvalidArgumentError("the test name must be a string");
    }
    test = args.positional[next++].string_value();
  }
  std::vector<Value> test_args(args.positional.begin() + next, args.positional.end());
  ValueList out;
  for (const Value& item : items) {
    FF_RETURN_IF_ERROR(ev.budget().ChargeIteration());
    Value subject = item;
    if (by_attribute) {
      FF_ASSIGN_OR_RETURN(subject, GetPath(ev, item, attribute));
    }
    bool passed;
    if (test.empty()) {
      passed = subject.Truthy();
    } else {
      FF_ASSIGN_OR_RETURN(passed, ev.ApplyTest(test, subject, test_args));
    }
    if (passed == keep) out.push_back(item);
  }
  return Value::Generator(std::move(out));
}

absl::StatusOr<Value> Map(Evaluator& ev, const Value& input, CallArgs& args) {
  FF_ASSIGN_OR_RETURN(ValueList items, IterateValue(input, ev.budget()));
  Value attribute = Arg(args, 99, "attribute");
  ValueList out;
  if (!attribute.is_undefined()) {
    Value fallback = Arg(args, 99, "default");
    for (const Value& item : items) {
      FF_RETURN_IF_ERROR(ev.budget().ChargeIteration());
      FF_ASSIGN_OR_RETURN(Value v, GetPath(ev, item, attribute));
      out.push_back(v.is_undefined() && !fallback.is_undefined() ? fallback : v);
    }
    return Value::Generator(std::move(out));
  }
  if (args.positional.empty() || !args.positional[0].is_string()) {
    return absl::InvalidArgumentError("map needs a filter name or attribute=");
  }
  std::string filter = args.positional[0].string_value();
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  rest.keyword = args.keyword;
  for (const Value& item : items) {
    FF_RETURN_IF_ERROR(ev.budget().ChargeIteration());
    CallArgs call = rest;
    FF_ASSIGN_OR_RETURN(Value v, ev.ApplyFilter(filter, item, call));
    out.push_back(std::move(v));
  }
  return Value::Generator(std::move(out));
}

absl::StatusOr<Value> Join(Evaluator& ev, const Value& input, CallArgs& args) {
  FF_ASSIGN_OR_RETURN(ValueList items, IterateValue(input, ev.budget()));
  Value separator = Arg(args, 0, "d");
  Value attribute = Arg(args, 1, "attribute");
  std::string sep = separator.is_undefined() ? "" : ToPythonStr(separator);
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    Value item = items[i];
    if (!attribute.is_undefined()) {
      FF_ASSIGN_OR_RETURN(item, GetPath(ev, item, attribute));
    }
    if (i > 0) out += sep;
    out += ToPythonStr(item);
    FF_RETURN_IF_ERROR(ev.budget().ChargeString(out.size()));
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> Sort(Evaluator& ev, const Value& input, CallArgs& args) {
  FF_ASSIGN_OR_RETURN(ValueList items, IterateValue(input, ev.budget()));
  const bool reverse = Arg(args, 0, "reverse").Truthy();
  const bool case_sensitive = Arg(args, 1, "case_sensitive").Truthy();
  Value attribute = Arg(args, 2, "attribute");
  std::vector<std::pair<Value, Value>> keyed;
  for (const Value& item : items) {
    Value key = item;
    if (!attribute.is_undefined()) {
      FF_ASSIGN_OR_RETURN(key, GetPath(ev, item, attribute));
    }
    if (key.is_string() && !case_sensitive) key = Value::String(PythonLower(key.string_value()));
    keyed.emplace_back(std::move(key), item);
  }
  absl::Status error;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    absl::StatusOr<bool> less =
        ApplyCompare("<", reverse ? b.first : a.first, reverse ? a.first : b.first);
    if (!less.ok()) {
      if (error.ok()) error = less.status();
      return false;
    }
    return *less;
  });
  if (!error.ok()) return error;
  ValueList out;
  for (auto& [unused, item] : keyed) out.push_back(std::move(item));
  return Value::List(std::move(out));
}

absl::StatusOr<Value> Indent(Evaluator& ev, const Value& input, CallArgs& args) {
  Value width = Arg(args, 0, "width");
  std::string pad = width.is_string() ? width.string_value()
                    : width.is_integral()
                        ? std::string(std::clamp<int64_t>(width.int_value(), 0, 256), ' ')
                        : std::string(4, ' ');
  const bool first = Arg(args, 1, "first").Truthy();
  const bool blank = Arg(args, 2, "blank").Truthy();
  std::string text = ToPythonStr(input);
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out += '\n';
    bool indent_this = (i > 0 || first) && (blank || !PythonStrip(lines[i], true, true).empty());
    if (indent_this) out += pad;
    out += lines[i];
    FF_RETURN_IF_ERROR(ev.budget().ChargeString(out.size()));
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> MinMax(Evaluator& ev, const Value& input, bool want_max) {
  FF_ASSIGN_OR_RETURN(ValueList items, IterateValue(input, ev.budget()));
  if (items.empty()) return Value::Undefined("min/max of an empty sequence");
  Value best = items[0];
  for (size_t i = 1; i < items.size(); ++i) {
    FF_ASSIGN_OR_RETURN(bool better, ApplyCompare(want_max ? ">" : "<", items[i], best));
    if (better) best = items[i];
  }
  return best;
}

}  // namespace

absl::StatusOr<Value> RunFilter(Evaluator& ev, std::string_view name, const Value& input,
                                CallArgs& args) {
  if (name == "trim") {
    Value chars = Arg(args, 0, "chars");
    std::string text = ToPythonStr(input);
    if (chars.is_string()) {
      return Value::String(std::string(PythonStripChars(text, chars.string_value(), true, true)));
    }
    return Value::String(std::string(PythonStrip(text, true, true)));
  }
  if (name == "tojson") return Tojson(ev, input, args);
  if (name == "length" || name == "count") {
    FF_ASSIGN_OR_RETURN(int64_t length, ValueLength(input));
    return Value::Int(length);
  }
  if (name == "upper") return Value::String(PythonUpper(ToPythonStr(input)));
  if (name == "lower") return Value::String(PythonLower(ToPythonStr(input)));
  if (name == "title") return Value::String(JinjaTitle(ToPythonStr(input)));
  if (name == "capitalize") return Value::String(PythonCapitalize(ToPythonStr(input)));
  if (name == "string") return MakeString(ev, ToPythonStr(input));
  if (name == "safe") return MakeString(ev, ToPythonStr(input));  // Markup is a str
  if (name == "default" || name == "d") {
    Value fallback = Arg(args, 0, "default_value");
    const bool boolean = Arg(args, 1, "boolean").Truthy();
    if (input.is_undefined() || (boolean && !input.Truthy())) {
      return fallback.is_undefined() ? Value::String("") : fallback;
    }
    return input;
  }
  if (name == "join") return Join(ev, input, args);
  if (name == "list") {
    FF_ASSIGN_OR_RETURN(ValueList items, IterateValue(input, ev.budget()));
    return Value::List(std::move(items));
  }
  if (name == "items") {
    if (input.is_undefined()) return Value::Generator({});
    if (!input.is_dict()) {
      return absl::InvalidArgumentError(
          absl::StrCat("can only get item pairs from a mapping, not '", input.TypeName(), "'"));
    }
    ValueList out;
    for (const auto& [key, value] : input.dict().entries()) {
      out.push_back(Value::Tuple({Value::String(key), value}));
    }
    FF_RETURN_IF_ERROR(ev.budget().ChargeItems(out.size()));
    return Value::Generator(std::move(out));
  }
  if (name == "select") return SelectItems(ev, input, args, false, true);
  if (name == "reject") return SelectItems(ev, input, args, false, false);
  if (name == "selectattr") return SelectItems(ev, input, args, true, true);
  if (name == "rejectattr") return SelectItems(ev, input, args, true, false);
  if (name == "map") return Map(ev, input, args);
  if (name == "last" && input.is_generator()) {
    return absl::InvalidArgumentError("'generator' object is not reversible");
  }
  if (name == "first" || name == "last") {
    FF_ASSIGN_OR_RETURN(ValueList items, IterateValue(input, ev.budget()));
    if (items.empty())
      return Value::Undefined(absl::StrCat(std::string(name), " of an empty sequence"));
    return name == "first" ? items.front() : items.back();
  }
  if (name == "reverse") {
    if (input.is_string()) {
      std::vector<std::string_view> points = CodePoints(input.string_value());
      std::string out;
      for (auto it = points.rbegin(); it != points.rend(); ++it) out += *it;
      return Value::String(std::move(out));
    }
    FF_ASSIGN_OR_RETURN(ValueList items, IterateValue(input, ev.budget()));
    std::reverse(items.begin(), items.end());
    return Value::Generator(std::move(items));  // Python's reversed() iterator
  }
  if (name == "unique") {
    FF_ASSIGN_OR_RETURN(ValueList items, IterateValue(input, ev.budget()));
    ValueList out;
    for (const Value& item : items) {
      FF_RETURN_IF_ERROR(ev.budget().ChargeItems(out.size()));
      bool seen = false;
      for (const Value& kept : out) seen = seen || ValuesEqual(kept, item);
      if (!seen) out.push_back(item);
    }
    return Value::Generator(std::move(out));
  }
  if (name == "sort") return Sort(ev, input, args);
  if (name == "min") return MinMax(ev, input, false);
  if (name == "max") return MinMax(ev, input, true);
  if (name == "sum") {
    FF_ASSIGN_OR_RETURN(ValueList items, IterateValue(input, ev.budget()));
    Value total = Arg(args, 1, "start");
    if (total.is_undefined()) total = Value::Int(0);
    for (const Value& item : items) {
      FF_ASSIGN_OR_RETURN(total, ApplyBinary("+", total, item, ev.budget()));
    }
    return total;
  }
  if (name == "replace") {
    CallArgs call = args;
    FF_ASSIGN_OR_RETURN(Value text, MakeString(ev, ToPythonStr(input)));
    FF_ASSIGN_OR_RETURN(Value method, ev.GetAttribute(text, "replace"));
    return method.callable().call(call);
  }
  if ((name == "int" || name == "float") && input.is_undefined()) return UndefinedError(input);
  if (name == "int") {
    Value fallback = Arg(args, 0, "default");
    if (fallback.is_undefined()) fallback = Value::Int(0);
    if (input.is_integral()) return Value::Int(input.int_value());
    if (input.is_float()) {
      if (!std::isfinite(input.float_value()) || std::fabs(input.float_value()) > 9.2e18) {
        return fallback;
      }
      return Value::Int(static_cast<int64_t>(input.float_value()));
    }
    if (input.is_string()) {
      int64_t parsed;
      std::string text(PythonStrip(input.string_value(), true, true));
      if (absl::SimpleAtoi(text, &parsed)) return Value::Int(parsed);
      double d;
      if (absl::SimpleAtod(text, &d) && std::isfinite(d) && std::fabs(d) < 9.2e18) {
        return Value::Int(static_cast<int64_t>(d));
      }
    }
    return fallback;
  }
  if (name == "float") {
    Value fallback = Arg(args, 0, "default");
    if (fallback.is_undefined()) fallback = Value::Float(0.0);
    if (input.is_number()) return Value::Float(input.AsDouble());
    double d;
    if (input.is_string() &&
        absl::SimpleAtod(std::string(PythonStrip(input.string_value(), true, true)), &d)) {
      return Value::Float(d);
    }
    return fallback;
  }
  if (name == "abs") {
    if (input.is_float()) return Value::Float(std::fabs(input.float_value()));
    if (input.is_integral()) {
      if (input.int_value() == INT64_MIN) return absl::OutOfRangeError("integer overflow");
      return Value::Int(std::llabs(input.int_value()));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("bad operand type for abs(): '", input.TypeName(), "'"));
  }
  if (name == "escape" || name == "e") {
    std::string out;
    for (char c : ToPythonStr(input)) {
      switch (c) {
        case '&':
          out += "&amp;";
          break;
        case '<':
          out += "&lt;";
          break;
        case '>':
          out += "&gt;";
          break;
        case '"':
          out += "&#34;";
          break;
        case '\'':
          out += "&#39;";
          break;
        default:
          out += c;
      }
    }
    return MakeString(ev, std::move(out));
  }
  if (name == "indent") return Indent(ev, input, args);
  if (name == "wordcount") return Value::Int(JinjaWordCount(ToPythonStr(input)));
  return absl::InvalidArgumentError(absl::StrCat("no filter named '", std::string(name), "'"));
}

}  // namespace flatfleet::chat_template
