#include "common/chat_template/json_conversion.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template/python_text.h"
#include "common/tokenizer/utf8.h"

namespace flatfleet::chat_template {
namespace {

template <typename Json>
absl::StatusOr<Value> FromJsonAtDepth(const Json& json, int depth) {
  if (depth > kMaxJsonDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON nested deeper than ", kMaxJsonDepth, " levels"));
  }
  switch (json.type()) {
    case nlohmann::json::value_t::null:
      return Value::None();
    case nlohmann::json::value_t::boolean:
      return Value::Bool(json.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value::Int(json.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      uint64_t value = json.template get<uint64_t>();
      if (value > static_cast<uint64_t>(INT64_MAX)) return Value::Float(static_cast<double>(value));
      return Value::Int(static_cast<int64_t>(value));
    }
    case nlohmann::json::value_t::number_float:
      return Value::Float(json.template get<double>());
    case nlohmann::json::value_t::string:
      return Value::String(json.template get<std::string>());
    case nlohmann::json::value_t::array: {
      ValueList items;
      items.reserve(json.size());
      for (const Json& item : json) {
        absl::StatusOr<Value> value = FromJsonAtDepth(item, depth + 1);
        if (!value.ok()) return value.status();
        items.push_back(*std::move(value));
      }
      return Value::List(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      ValueDict dict;
      for (auto it = json.begin(); it != json.end(); ++it) {
        absl::StatusOr<Value> value = FromJsonAtDepth(it.value(), depth + 1);
        if (!value.ok()) return value.status();
        dict.Set(it.key(), *std::move(value));
      }
      return Value::Dict(std::move(dict));
    }
    default:
      return absl::InvalidArgumentError("unsupported JSON value (binary or discarded)");
  }
}

void AppendJsonString(const std::string& text, bool ensure_ascii, std::string& out) {
  out += '"';
  for (size_t pos = 0; pos < text.size(); ++pos) {
    const unsigned char c = text[pos];
    if (ensure_ascii && c >= 0x80) {
      size_t length = tokenizer::Utf8SequenceLength(text, pos);
      char32_t code = length == 0 ? 0xFFFD : tokenizer::DecodeUtf8At(text, pos, length);
      char escape[16];
      if (code > 0xFFFF) {
        code -= 0x10000;
        std::snprintf(escape, sizeof(escape), "\\u%04x\\u%04x",
                      static_cast<unsigned>(0xD800 + (code >> 10)),
                      static_cast<unsigned>(0xDC00 + (code & 0x3FF)));
      } else {
        std::snprintf(escape, sizeof(escape), "\\u%04x", static_cast<unsigned>(code));
      }
      out += escape;
      pos += (length == 0 ? 1 : length) - 1;
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          char escape[8];
          std::snprintf(escape, sizeof(escape), "\\u%04x", c);
          out += escape;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

class JsonWriter {
 public:
  explicit JsonWriter(const JsonDumpOptions& options) : options_(options) {
    indented_ = options.indent >= 0 || !options.indent_text.empty();
    if (options.indent_text.empty() && options.indent > 0) {
      indent_unit_ = std::string(options.indent, ' ');
    } else {
      indent_unit_ = options.indent_text;
    }
    item_separator_ =
        options.item_separator.empty() ? (indented_ ? "," : ", ") : options.item_separator;
  }

  absl::Status Write(const Value& value, int depth) {
    if (depth > kMaxJsonDepth) {
      return absl::InvalidArgumentError(
          absl::StrCat("tojson: value nested deeper than ", kMaxJsonDepth, " levels"));
    }
    switch (value.kind()) {
      case Value::Kind::kNone:
        out_ += "null";
        return absl::OkStatus();
      case Value::Kind::kBool:
        out_ += value.bool_value() ? "true" : "false";
        return absl::OkStatus();
      case Value::Kind::kInt:
        absl::StrAppend(&out_, value.int_value());
        return absl::OkStatus();
      case Value::Kind::kFloat: {
        double f = value.float_value();
        if (std::isnan(f)) {
          out_ += "NaN";
        } else if (std::isinf(f)) {
          out_ += f > 0 ? "Infinity" : "-Infinity";
        } else {
          out_ += PythonFloatRepr(f);
        }
        return absl::OkStatus();
      }
      case Value::Kind::kString:
        AppendJsonString(value.string_value(), options_.ensure_ascii, out_);
        return absl::OkStatus();
      case Value::Kind::kList: {
        if (value.is_generator()) {
          return absl::InvalidArgumentError("Object of type generator is not JSON serializable");
        }
        if (value.list().empty()) {
          out_ += "[]";
          return absl::OkStatus();
        }
        out_ += '[';
        bool first = true;
        for (const Value& item : value.list()) {
          if (!first) out_ += item_separator_;
          first = false;
          NewLine(depth + 1);
          if (absl::Status status = Write(item, depth + 1); !status.ok()) return status;
        }
        NewLine(depth);
        out_ += ']';
        return absl::OkStatus();
      }
      case Value::Kind::kDict: {
        if (value.dict().size() == 0) {
          out_ += "{}";
          return absl::OkStatus();
        }
        std::vector<const std::pair<std::string, Value>*> entries;
        for (const auto& entry : value.dict().entries()) entries.push_back(&entry);
        if (options_.sort_keys) {
          std::stable_sort(entries.begin(), entries.end(),
                           [](const auto* a, const auto* b) { return a->first < b->first; });
        }
        out_ += '{';
        bool first = true;
        for (const auto* entry : entries) {
          if (!first) out_ += item_separator_;
          first = false;
          NewLine(depth + 1);
          AppendJsonString(entry->first, options_.ensure_ascii, out_);
          out_ += options_.key_separator;
          if (absl::Status status = Write(entry->second, depth + 1); !status.ok()) return status;
        }
        NewLine(depth);
        out_ += '}';
        return absl::OkStatus();
      }
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("Object of type ", value.TypeName(), " is not JSON serializable"));
    }
  }

  std::string Take() { return std::move(out_); }

 private:
  void NewLine(int depth) {
    if (!indented_) return;
    out_ += '\n';
    for (int i = 0; i < depth; ++i) out_ += indent_unit_;
  }

  const JsonDumpOptions& options_;
  bool indented_ = false;
  std::string indent_unit_;
  std::string item_separator_;
  std::string out_;
};

}  // namespace

absl::StatusOr<Value> ValueFromJson(const nlohmann::ordered_json& json) {
  return FromJsonAtDepth(json, 0);
}

absl::StatusOr<Value> ValueFromJson(const nlohmann::json& json) { return FromJsonAtDepth(json, 0); }

absl::StatusOr<std::string> DumpJson(const Value& value, const JsonDumpOptions& options) {
  JsonWriter writer(options);
  if (absl::Status status = writer.Write(value, 0); !status.ok()) return status;
  return writer.Take();
}

}  // namespace flatfleet::chat_template
