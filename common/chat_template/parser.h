// Builds the syntax tree from the lexer's tokens, with Jinja2's operator precedence:
// conditional < or < and < not < comparisons/in < + - < ~ < * / // % < ** < unary -/+ <
// postfix (.attr, [index], [a:b:c], call) < filters and tests.
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/chat_template/ast.h"
#include "common/chat_template/lexer.h"

namespace flatfleet::chat_template {

// Nesting of blocks and expressions beyond this is refused (the parser and the evaluator
// recurse on it).
inline constexpr int kMaxTemplateNesting = 128;

// `source` is the normalised source the tokens came from (for error positions).
absl::StatusOr<NodeList> ParseTemplate(const std::vector<Token>& tokens, std::string_view source);

}  // namespace flatfleet::chat_template
