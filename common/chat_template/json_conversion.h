// JSON in and out of template values: request messages and tools become values, and the
// tojson filter writes values the way transformers' tojson does (Python json.dumps with
// ensure_ascii=False: no HTML escaping, non-ASCII kept, key order kept).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/chat_template/value.h"
#include "nlohmann/json.hpp"

namespace flatfleet::chat_template {

// Deeper JSON is refused rather than recursed into.
inline constexpr int kMaxJsonDepth = 256;

absl::StatusOr<Value> ValueFromJson(const nlohmann::ordered_json& json);
absl::StatusOr<Value> ValueFromJson(const nlohmann::json& json);

struct JsonDumpOptions {
  // Newline and this many spaces per level; negative: everything on one line.
  int indent = -1;
  std::string indent_text;  // used instead of spaces when non-empty (indent="\t")
  // Python's defaults: ", " and ": " on one line, "," and ": " when indented.
  std::string item_separator;
  std::string key_separator = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;  // escape non-ASCII as \uXXXX (surrogate pairs above U+FFFF)
};

// json.dumps(value): undefined, namespaces and callables are not serializable (TypeError in
// Python), NaN and infinities print as NaN/Infinity as Python's do.
absl::StatusOr<std::string> DumpJson(const Value& value, const JsonDumpOptions& options);

}  // namespace flatfleet::chat_template
