#include "common/chat_template/methods.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template/evaluator.h"
#include "common/chat_template/operators.h"
#include "common/chat_template/python_text.h"
#include "common/chat_template/value_format.h"

namespace flatfleet::chat_template {
namespace {

using Method = absl::StatusOr<Value> (*)(Evaluator&, const Value&, CallArgs&);

Value Arg(const CallArgs& args, size_t index, std::string_view name) {
  for (const auto& [key, value] : args.keyword) {
    if (key == name) return value;
  }
  return index < args.positional.size() ? args.positional[index] : Value();
}

absl::StatusOr<std::string> StringArg(const CallArgs& args, size_t index, std::string_view name,
                                      std::string_view method) {
  Value v = Arg(args, index, name);
  if (!v.is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(method), "() argument '",
                                                   std::string(name), "' must be str, not ",
                                                   v.TypeName()));
  }
  return v.string_value();
}

absl::StatusOr<Value> Strip(const Value& self, CallArgs& args, bool left, bool right) {
  Value chars = Arg(args, 0, "chars");
  const std::string& text = self.string_value();
  if (chars.is_undefined() || chars.is_none()) {
    return Value::String(std::string(PythonStrip(text, left, right)));
  }
  if (!chars.is_string()) return absl::InvalidArgumentError("strip arg must be None or str");
  return Value::String(std::string(PythonStripChars(text, chars.string_value(), left, right)));
}

absl::StatusOr<Value> AffixTest(const Value& self, CallArgs& args, bool prefix) {
  Value affix = Arg(args, 0, prefix ? "prefix" : "suffix");
  std::vector<std::string> candidates;
  if (affix.is_string()) {
    candidates.push_back(affix.string_value());
  } else if (affix.is_list()) {
    for (const Value& v : affix.list()) {
      if (!v.is_string()) return absl::InvalidArgumentError("tuple for startswith must hold str");
      candidates.push_back(v.string_value());
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(prefix ? "startswith" : "endswith",
                                                   " first arg must be str or a tuple of str, not ",
                                                   affix.TypeName()));
  }
  for (const std::string& c : candidates) {
    if (prefix ? absl::StartsWith(self.string_value(), c) : absl::EndsWith(self.string_value(), c))
      return Value::Bool(true);
  }
  return Value::Bool(false);
}

absl::StatusOr<Value> Split(Evaluator& ev, const Value& self, CallArgs& args, bool from_right) {
  Value sep = Arg(args, 0, "sep");
  Value max_value = Arg(args, 1, "maxsplit");
  int64_t max_split = max_value.is_integral() ? max_value.int_value() : -1;
  const std::string& text = self.string_value();
  std::vector<std::string> parts;
  if (sep.is_undefined() || sep.is_none()) {
    // Runs of whitespace separate; leading and trailing whitespace yields no empty parts.
    std::vector<std::pair<size_t, size_t>> words;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t length;
      if (IsPythonWhitespaceAt(text, pos, &length)) {
        pos += length;
        continue;
      }
      size_t start = pos;
      while (pos < text.size() && !IsPythonWhitespaceAt(text, pos, &length)) pos += length;
      words.emplace_back(start, pos);
    }
    if (max_split >= 0 && static_cast<int64_t>(words.size()) > max_split + 1) {
      if (from_right) {
        size_t keep_from = words.size() - max_split;
        // Python keeps the whitespace inside the unsplit remainder.
        parts.push_back(text.substr(0, words[keep_from - 1].second));
        for (size_t i = keep_from; i < words.size(); ++i) {
          parts.push_back(text.substr(words[i].first, words[i].second - words[i].first));
        }
      } else {
        for (int64_t i = 0; i < max_split; ++i) {
          parts.push_back(text.substr(words[i].first, words[i].second - words[i].first));
        }
        parts.push_back(text.substr(words[max_split].first));
      }
    } else {
      for (auto [b, e] : words) parts.push_back(text.substr(b, e - b));
    }
  } else {
    if (!sep.is_string()) return absl::InvalidArgumentError("must be str or None");
    const std::string& s = sep.string_value();
    if (s.empty()) return absl::InvalidArgumentError("empty separator");
    if (!from_right) {
      size_t start = 0;
      int64_t splits = 0;
      while (max_split < 0 || splits < max_split) {
        size_t found = text.find(s, start);
        if (found == std::string::npos) break;
        parts.push_back(text.substr(start, found - start));
        start = found + s.size();
        ++splits;
      }
      parts.push_back(text.substr(start));
    } else {
      size_t end = text.size();
      int64_t splits = 0;
      std::vector<std::string> reversed;
      while (max_split < 0 || splits < max_split) {
        if (end < s.size()) break;
        size_t found = text.rfind(s, end - s.size());
        if (found == std::string::npos) break;
        reversed.push_back(text.substr(found + s.size(), end - found - s.size()));
        end = found;
        ++splits;
      }
      reversed.push_back(text.substr(0, end));
      parts.assign(reversed.rbegin(), reversed.rend());
    }
  }
  if (absl::Status s = ev.budget().ChargeItems(parts.size()); !s.ok()) return s;
  ValueList items;
  items.reserve(parts.size());
  for (std::string& part : parts) items.push_back(Value::String(std::move(part)));
  return Value::List(std::move(items));
}

absl::StatusOr<Value> Replace(Evaluator& ev, const std::string& text, const std::string& old_text,
                              const std::string& new_text, int64_t count) {
  std::string out;
  if (old_text.empty()) {
    // Python inserts the replacement between code points and at both ends.
    std::vector<std::string_view> points = CodePoints(text);
    int64_t done = 0;
    for (size_t i = 0; i <= points.size(); ++i) {
      if (count < 0 || done < count) {
        out += new_text;
        ++done;
      }
      if (i < points.size()) out += points[i];
      if (out.size() > ev.budget().limits().max_string_bytes) break;
    }
  } else {
    size_t start = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
      size_t found = text.find(old_text, start);
      if (found == std::string::npos) break;
      out.append(text, start, found - start);
      out += new_text;
      start = found + old_text.size();
      ++done;
      if (out.size() > ev.budget().limits().max_string_bytes) break;
    }
    out.append(text, start, std::string::npos);
  }
  if (absl::Status s = ev.budget().ChargeString(out.size()); !s.ok()) return s;
  return Value::String(std::move(out));
}

absl::StatusOr<Value> StringMethod(Evaluator& ev, const Value& self, std::string_view name,
                                   CallArgs& args) {
  const std::string& text = self.string_value();
  if (name == "strip") return Strip(self, args, true, true);
  if (name == "lstrip") return Strip(self, args, true, false);
  if (name == "rstrip") return Strip(self, args, false, true);
  if (name == "startswith") return AffixTest(self, args, true);
  if (name == "endswith") return AffixTest(self, args, false);
  if (name == "split") return Split(ev, self, args, false);
  if (name == "rsplit") return Split(ev, self, args, true);
  if (name == "upper") return Value::String(PythonUpper(text));
  if (name == "lower") return Value::String(PythonLower(text));
  if (name == "title") return Value::String(PythonTitle(text));
  if (name == "capitalize") return Value::String(PythonCapitalize(text));
  if (name == "replace") {
    absl::StatusOr<std::string> old_text = StringArg(args, 0, "old", "replace");
    absl::StatusOr<std::string> new_text = StringArg(args, 1, "new", "replace");
    if (!old_text.ok()) return old_text.status();
    if (!new_text.ok()) return new_text.status();
    Value count = Arg(args, 2, "count");
    return Replace(ev, text, *old_text, *new_text, count.is_integral() ? count.int_value() : -1);
  }
  if (name == "find" || name == "rfind" || name == "count" || name == "index") {
    absl::StatusOr<std::string> needle = StringArg(args, 0, "sub", name);
    if (!needle.ok()) return needle.status();
    if (name == "count") {
      if (needle->empty()) return Value::Int(static_cast<int64_t>(CodePointCount(text)) + 1);
      int64_t n = 0;
      for (size_t p = text.find(*needle); p != std::string::npos;
           p = text.find(*needle, p + needle->size())) {
        ++n;
      }
      return Value::Int(n);
    }
    size_t found = name == "rfind" ? text.rfind(*needle) : text.find(*needle);
    if (found == std::string::npos) {
      if (name == "index") return absl::InvalidArgumentError("substring not found");
      return Value::Int(-1);
    }
    return Value::Int(
        static_cast<int64_t>(CodePointCount(std::string_view(text).substr(0, found))));
  }
  if (name == "join") {
    absl::StatusOr<ValueList> items = IterateValue(Arg(args, 0, "iterable"), ev.budget());
    if (!items.ok()) return items.status();
    std::string out;
    for (size_t i = 0; i < items->size(); ++i) {
      if (!(*items)[i].is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "sequence item ", i, ": expected str instance, ", (*items)[i].TypeName(), " found"));
      }
      if (i > 0) out += text;
      out += (*items)[i].string_value();
      if (absl::Status s = ev.budget().ChargeString(out.size()); !s.ok()) return s;
    }
    return Value::String(std::move(out));
  }
  auto all_points = [&](auto predicate) {
    if (text.empty()) return Value::Bool(false);
    for (unsigned char c : text) {
      if (!predicate(c)) return Value::Bool(false);
    }
    return Value::Bool(true);
  };
  if (name == "isdigit") return all_points([](unsigned char c) { return absl::ascii_isdigit(c); });
  if (name == "isalpha") return all_points([](unsigned char c) { return absl::ascii_isalpha(c); });
  if (name == "isalnum") return all_points([](unsigned char c) { return absl::ascii_isalnum(c); });
  if (name == "isspace") {
    if (text.empty()) return Value::Bool(false);
    return Value::Bool(PythonStrip(text, true, true).empty());
  }
  if (name == "islower") return Value::Bool(PythonLower(text) == text && PythonUpper(text) != text);
  if (name == "isupper") return Value::Bool(PythonUpper(text) == text && PythonLower(text) != text);
  return absl::InternalError("unknown string method");
}

absl::StatusOr<Value> DictMethod(Evaluator& ev, const Value& self, std::string_view name,
                                 CallArgs& args) {
  const ValueDict& dict = self.dict();
  if (name == "get") {
    Value key = Arg(args, 0, "key");
    Value fallback = Arg(args, 1, "default");
    if (key.is_string()) {
      const Value* found = dict.Find(key.string_value());
      if (found != nullptr) return *found;
    }
    return fallback.is_undefined() ? Value::None() : fallback;
  }
  if (absl::Status s = ev.budget().ChargeItems(dict.size()); !s.ok()) return s;
  ValueList out;
  for (const auto& [key, value] : dict.entries()) {
    if (name == "keys") {
      out.push_back(Value::String(key));
    } else if (name == "values") {
      out.push_back(value);
    } else {
      out.push_back(Value::Tuple({Value::String(key), value}));
    }
  }
  return Value::List(std::move(out));
}

bool IsStringMethod(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "strip", "lstrip",  "rstrip",     "startswith", "endswith", "split",   "rsplit", "upper",
      "lower", "title",   "capitalize", "replace",    "find",     "rfind",   "count",  "index",
      "join",  "isdigit", "isalpha",    "isalnum",    "isspace",  "islower", "isupper"};
  for (std::string_view n : kNames) {
    if (n == name) return true;
  }
  return false;
}

}  // namespace

std::optional<Value> BoundMethod(Evaluator& evaluator, const Value& object, std::string_view name) {
  Evaluator* ev = &evaluator;
  std::string method(name);
  if (object.is_string() && IsStringMethod(name)) {
    return Value::Function(method, [ev, object, method](CallArgs& args) {
      return StringMethod(*ev, object, method, args);
    });
  }
  if (object.is_dict() &&
      (name == "items" || name == "keys" || name == "values" || name == "get")) {
    return Value::Function(method, [ev, object, method](CallArgs& args) {
      return DictMethod(*ev, object, method, args);
    });
  }
  return std::nullopt;
}

}  // namespace flatfleet::chat_template
