// The values a chat template computes with, modelled on the Python objects Jinja2 sees:
// undefined, None, bool, int, float, str, list, dict (insertion-ordered), namespace() and
// callables (globals, macros, bound methods). Lists and dicts are immutable and shared, as in
// transformers' ImmutableSandboxedEnvironment; a namespace is the one mutable object.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace flatfleet::chat_template {

class Value;
class ValueDict;
struct CallArgs;
struct Callable;
using ValueList = std::vector<Value>;

class Value {
 public:
  enum class Kind {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,
    kCallable
  };

  // Undefined; `name` is what was looked up, for error messages.
  Value() = default;
  static Value Undefined(std::string name);
  static Value None();
  static Value Bool(bool value);
  static Value Int(int64_t value);
  static Value Float(double value);
  static Value String(std::string value);
  static Value List(ValueList items);
  // A list that prints as a Python tuple: (1, 2), ('key', 'value').
  static Value Tuple(ValueList items);
  // What Jinja's lazy filters (select, map, items, ...) return: a Python generator, which
  // iterates like a list but is always true and has no len() or index (until `| list`).
  static Value Generator(ValueList items);
  static Value Dict(ValueDict dict);
  static Value Namespace(ValueDict initial);
  static Value Function(std::string name,
                        std::function<absl::StatusOr<Value>(CallArgs& args)> call);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  // Python's bool is an int: True + 1 == 2.
  bool is_integral() const { return kind_ == Kind::kInt || kind_ == Kind::kBool; }
  bool is_number() const { return is_integral() || is_float(); }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_tuple() const { return kind_ == Kind::kList && tuple_; }
  bool is_generator() const { return kind_ == Kind::kList && generator_; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_callable() const { return kind_ == Kind::kCallable; }

  bool bool_value() const { return int_ != 0; }
  int64_t int_value() const { return int_; }  // also for bools
  double float_value() const { return float_; }
  double AsDouble() const { return is_float() ? float_ : static_cast<double>(int_); }
  const std::string& string_value() const { return *string_; }
  const ValueList& list() const { return *list_; }
  const ValueDict& dict() const { return *dict_; }  // dicts and namespaces
  ValueDict& mutable_namespace() const { return *namespace_; }
  const Callable& callable() const { return *callable_; }
  const std::string& undefined_name() const { return *string_; }

  // Python truthiness: empty strings, lists and dicts, 0, None and undefined are false.
  bool Truthy() const;
  // Python's type name, for error messages ("str", "int", "dict", ...).
  const char* TypeName() const;

 private:
  Kind kind_ = Kind::kUndefined;
  bool tuple_ = false;
  bool generator_ = false;
  int64_t int_ = 0;
  double float_ = 0;
  std::shared_ptr<const std::string> string_;
  std::shared_ptr<const ValueList> list_;
  std::shared_ptr<const ValueDict> dict_;
  std::shared_ptr<ValueDict> namespace_;
  std::shared_ptr<const Callable> callable_;
};

// An insertion-ordered str -> Value map (Python dicts keep insertion order, and tojson must too).
class ValueDict {
 public:
  void Set(std::string key, Value value);
  const Value* Find(std::string_view key) const;
  const std::vector<std::pair<std::string, Value>>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }

 private:
  std::vector<std::pair<std::string, Value>> entries_;
  absl::flat_hash_map<std::string, size_t> index_;
};

// Arguments of a call: f(a, b, key=c).
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

struct Callable {
  std::string name;
  std::function<absl::StatusOr<Value>(CallArgs& args)> call;
};

// Python ==: numbers compare across int/float/bool, lists and dicts deeply; undefined equals
// only undefined, namespaces and callables only themselves.
bool ValuesEqual(const Value& a, const Value& b);

}  // namespace flatfleet::chat_template
