// Splits a template into tokens the way Jinja2's lexer does under transformers' settings:
// text between tags (after whitespace control: {%- -%} {{- -}} {#- -#}, trim_blocks,
// lstrip_blocks, {% raw %}), and the names, literals and operators inside {{ }} and {% %}.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace flatfleet::chat_template {

struct Token {
  enum class Kind {
    kText,           // template data, already whitespace-processed
    kVariableBegin,  // {{
    kVariableEnd,    // }}
    kBlockBegin,     // {%
    kBlockEnd,       // %}
    kName,
    kString,  // text holds the decoded value
    kInteger,
    kFloat,
    kOperator,  // text holds the operator: + - * / // % ** ~ == != < <= > >= = ( ) [ ] { } , . : |
    kEnd,
  };
  Kind kind;
  std::string text;
  int64_t integer = 0;
  double number = 0;
  size_t offset = 0;  // byte offset in the (newline-normalised) source, for error positions
};

struct LexerOptions {
  bool trim_blocks = true;    // drop the first newline after a block or comment tag
  bool lstrip_blocks = true;  // drop spaces and tabs before a block or comment tag on its line
  bool keep_trailing_newline = false;
};

// The source with Jinja's newline normalisation (\r\n and \r become \n) and, unless
// keep_trailing_newline, one trailing newline removed. Offsets in tokens refer to this text.
std::string NormalizeTemplateSource(std::string_view source, const LexerOptions& options);

// Tokenizes a normalised source. Errors name the line and column.
absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source, const LexerOptions& options);

// "line L, column C" of a byte offset.
std::string DescribePosition(std::string_view source, size_t offset);

}  // namespace flatfleet::chat_template
