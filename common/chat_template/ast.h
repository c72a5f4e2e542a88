// The syntax tree of a parsed template: expressions and the statements (text, output, if, for,
// set, macro, ...) that hold them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/chat_template/value.h"

namespace flatfleet::chat_template {

struct Expr {
  enum class Kind {
    kLiteral,      // literal
    kName,         // name
    kList,         // children: items
    kTuple,        // children: items (a list value; templates cannot tell them apart)
    kDict,         // children: key, value, key, value, ...
    kGetAttr,      // children[0].name
    kGetItem,      // children[0][children[1]]
    kSlice,        // children[0][children[1]:children[2]:children[3]] (null: omitted)
    kCall,         // children[0](children[1..]); the last keyword_names.size() are keywords
    kFilter,       // children[0] | name(children[1..])
    kTest,         // children[0] is [not] name(children[1..])
    kUnary,        // name ("-", "+", "not") children[0]
    kBinary,       // children[0] name children[1]: + - * / // % ** ~
    kAnd,          // children[0] and children[1]
    kOr,           // children[0] or children[1]
    kCompare,      // children[0] operators[0] children[1] operators[1] children[2] ...
    kConditional,  // children[0] if children[1] else children[2] (null: undefined)
  };
  Kind kind;
  size_t offset = 0;  // where it starts in the source, for error positions
  Value literal;
  std::string name;
  bool negated = false;                // kTest: "is not"
  std::vector<std::string> operators;  // kCompare
  std::vector<std::string> keyword_names;
  std::vector<std::unique_ptr<Expr>> children;
};

struct Node;
using NodeList = std::vector<std::unique_ptr<Node>>;

struct MacroParameter {
  std::string name;
  std::unique_ptr<Expr> default_value;  // null: undefined when not passed
};

struct Node {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // conditions[i] -> bodies[i]; bodies has one more entry for else
    kFor,       // for targets in expr [if condition]: bodies[0] [else bodies[1]]
    kSet,       // set targets = expr, or set targets[0].attribute = expr
    kSetBlock,  // set targets[0] %} bodies[0] {% endset
    kMacro,     // macro name(parameters): bodies[0]
    kBreak,
    kContinue,
    kScope,  // a body rendered in place ({% generation %})
  };
  Kind kind;
  size_t offset = 0;
  std::string text;
  std::string name;
  std::string attribute;
  std::vector<std::string> targets;
  std::unique_ptr<Expr> expr;
  std::unique_ptr<Expr> condition;
  std::vector<std::unique_ptr<Expr>> conditions;
  std::vector<NodeList> bodies;
  std::vector<MacroParameter> parameters;
  bool body_uses_loop = true;  // kFor: whether `loop` appears in the body (else not built)
};

}  // namespace flatfleet::chat_template
