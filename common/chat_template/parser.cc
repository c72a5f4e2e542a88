#include "common/chat_template/parser.h"

#include <initializer_list>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace flatfleet::chat_template {
namespace {

using ExprPtr = std::unique_ptr<Expr>;

std::string JoinNames(std::initializer_list<std::string_view> names) {
  std::string out;
  for (std::string_view name : names) {
    if (!out.empty()) out += "' or '";
    out += name;
  }
  return out;
}

ExprPtr MakeExpr(Expr::Kind kind, size_t offset) {
  auto expr = std::make_unique<Expr>();
  expr->kind = kind;
  expr->offset = offset;
  return expr;
}

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, std::string_view source)
      : tokens_(tokens), source_(source) {}

  absl::StatusOr<NodeList> ParseAll() {
    std::string end_tag;
    FF_ASSIGN_OR_RETURN(NodeList body, ParseBody({}, &end_tag));
    return body;
  }

 private:
  // Counts nesting while a parse function runs.
  class DepthGuard {
   public:
    explicit DepthGuard(int* depth) : depth_(depth) { ++*depth_; }
    ~DepthGuard() { --*depth_; }

   private:
    int* depth_;
  };

  const Token& Current() const { return tokens_[index_]; }
  const Token& Peek(size_t ahead = 1) const {
    size_t i = index_ + ahead;
    return i < tokens_.size() ? tokens_[i] : tokens_.back();
  }
  void Advance() {
    if (index_ + 1 < tokens_.size()) ++index_;
  }

  bool IsOperator(std::string_view op) const {
    return Current().kind == Token::Kind::kOperator && Current().text == op;
  }
  bool IsName(std::string_view name) const {
    return Current().kind == Token::Kind::kName && Current().text == name;
  }
  bool SkipOperator(std::string_view op) {
    if (!IsOperator(op)) return false;
    Advance();
    return true;
  }
  bool SkipName(std::string_view name) {
    if (!IsName(name)) return false;
    Advance();
    return true;
  }

  std::string Describe(const Token& token) const {
    switch (token.kind) {
      case Token::Kind::kText:
        return "template text";
      case Token::Kind::kVariableBegin:
        return "'{{'";
      case Token::Kind::kVariableEnd:
        return "'}}'";
      case Token::Kind::kBlockBegin:
        return "'{%'";
      case Token::Kind::kBlockEnd:
        return "'%}'";
      case Token::Kind::kEnd:
        return "end of template";
      case Token::Kind::kString:
        return "a string";
      default:
        return absl::StrCat("'", token.text, "'");
    }
  }

  absl::Status ErrorAt(size_t offset, const std::string& message) const {
    return absl::InvalidArgumentError(absl::StrCat(
        "template syntax error at ", DescribePosition(source_, offset), ": ", message));
  }
  absl::Status Unexpected(const std::string& expected) const {
    return ErrorAt(Current().offset,
                   absl::StrCat("expected ", expected, ", got ", Describe(Current())));
  }
  absl::Status TooDeep() const {
    return ErrorAt(Current().offset,
                   absl::StrCat("nested deeper than ", kMaxTemplateNesting, " levels"));
  }

  absl::Status ExpectOperator(std::string_view op) {
    if (!SkipOperator(op)) return Unexpected(absl::StrCat("'", std::string(op), "'"));
    return absl::OkStatus();
  }
  absl::Status ExpectBlockEnd() {
    if (Current().kind != Token::Kind::kBlockEnd) return Unexpected("'%}'");
    Advance();
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ExpectName() {
    if (Current().kind != Token::Kind::kName) return Unexpected("a name");
    std::string name = Current().text;
    Advance();
    return name;
  }

  // Parses nodes until a block tag whose name is in end_tags (returned in *end_tag, the stream
  // left after the name) or the end of the template (only when end_tags is empty).
  absl::StatusOr<NodeList> ParseBody(std::initializer_list<std::string_view> end_tags,
                                     std::string* end_tag) {
    DepthGuard guard(&depth_);
    if (depth_ > kMaxTemplateNesting) return TooDeep();
    NodeList body;
    while (true) {
      const Token& token = Current();
      switch (token.kind) {
        case Token::Kind::kEnd:
          if (end_tags.size() != 0) {
            return ErrorAt(token.offset, absl::StrCat("unexpected end of template, expected '",
                                                      JoinNames(end_tags), "'"));
          }
          return body;
        case Token::Kind::kText: {
          auto node = std::make_unique<Node>();
          node->kind = Node::Kind::kText;
          node->offset = token.offset;
          node->text = token.text;
          body.push_back(std::move(node));
          Advance();
          break;
        }
        case Token::Kind::kVariableBegin: {
          auto node = std::make_unique<Node>();
          node->kind = Node::Kind::kOutput;
          node->offset = token.offset;
          Advance();
          FF_ASSIGN_OR_RETURN(node->expr, ParseTuple(/*with_condition=*/true));
          if (Current().kind != Token::Kind::kVariableEnd) return Unexpected("'}}'");
          Advance();
          body.push_back(std::move(node));
          break;
        }
        case Token::Kind::kBlockBegin: {
          Advance();
          if (Current().kind != Token::Kind::kName) return Unexpected("a tag name");
          for (std::string_view end : end_tags) {
            if (Current().text == end) {
              *end_tag = Current().text;
              Advance();
              return body;
            }
          }
          FF_ASSIGN_OR_RETURN(std::unique_ptr<Node> node, ParseStatement());
          body.push_back(std::move(node));
          break;
        }
        default:
          return Unexpected("template text or a tag");
      }
    }
  }

  absl::StatusOr<std::unique_ptr<Node>> ParseStatement() {
    const Token& tag = Current();
    const std::string name = tag.text;
    const size_t offset = tag.offset;
    auto node = std::make_unique<Node>();
    node->offset = offset;
    Advance();
    if (name == "if") return ParseIf(std::move(node));
    if (name == "for") return ParseFor(std::move(node));
    if (name == "set") return ParseSet(std::move(node));
    if (name == "macro") return ParseMacro(std::move(node));
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) {
        return ErrorAt(offset, absl::StrCat("'", name, "' outside of a loop"));
      }
      node->kind = name == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
      FF_RETURN_IF_ERROR(ExpectBlockEnd());
      return node;
    }
    if (name == "generation") {  // transformers' AssistantTracker: renders its body as is
      node->kind = Node::Kind::kScope;
      FF_RETURN_IF_ERROR(ExpectBlockEnd());
      std::string end;
      FF_ASSIGN_OR_RETURN(NodeList body, ParseBody({"endgeneration"}, &end));
      FF_RETURN_IF_ERROR(ExpectBlockEnd());
      node->bodies.push_back(std::move(body));
      return node;
    }
    return ErrorAt(offset, absl::StrCat("unknown or unsupported tag '", name, "'"));
  }

  absl::StatusOr<std::unique_ptr<Node>> ParseIf(std::unique_ptr<Node> node) {
    node->kind = Node::Kind::kIf;
    while (true) {
      // As in Jinja, an if/elif condition cannot itself be a conditional expression.
      FF_ASSIGN_OR_RETURN(ExprPtr condition, ParseTuple(/*with_condition=*/false));
      FF_RETURN_IF_ERROR(ExpectBlockEnd());
      std::string end;
      FF_ASSIGN_OR_RETURN(NodeList body, ParseBody({"elif", "else", "endif"}, &end));
      node->conditions.push_back(std::move(condition));
      node->bodies.push_back(std::move(body));
      if (end == "elif") continue;
      if (end == "else") {
        FF_RETURN_IF_ERROR(ExpectBlockEnd());
        FF_ASSIGN_OR_RETURN(NodeList else_body, ParseBody({"endif"}, &end));
        node->bodies.push_back(std::move(else_body));
      }
      FF_RETURN_IF_ERROR(ExpectBlockEnd());
      return node;
    }
  }

  absl::StatusOr<std::vector<std::string>> ParseTargets() {
    std::vector<std::string> targets;
    bool parenthesized = SkipOperator("(");
    do {
      FF_ASSIGN_OR_RETURN(std::string target, ExpectName());
      targets.push_back(std::move(target));
    } while (SkipOperator(","));
    if (parenthesized) FF_RETURN_IF_ERROR(ExpectOperator(")"));
    return targets;
  }

  absl::StatusOr<std::unique_ptr<Node>> ParseFor(std::unique_ptr<Node> node) {
    node->kind = Node::Kind::kFor;
    FF_ASSIGN_OR_RETURN(node->targets, ParseTargets());
    if (!SkipName("in")) return Unexpected("'in'");
    FF_ASSIGN_OR_RETURN(node->expr, ParseTuple(/*with_condition=*/false));
    if (SkipName("if")) {
      FF_ASSIGN_OR_RETURN(node->condition, ParseExpression(/*with_condition=*/true));
    }
    if (IsName("recursive")) return ErrorAt(Current().offset, "recursive loops are not supported");
    FF_RETURN_IF_ERROR(ExpectBlockEnd());
    ++loop_depth_;
    const size_t body_start = index_;
    std::string end;
    absl::StatusOr<NodeList> body = ParseBody({"else", "endfor"}, &end);
    --loop_depth_;
    node->body_uses_loop = false;
    for (size_t i = body_start; i < index_; ++i) {
      if (tokens_[i].kind == Token::Kind::kName && tokens_[i].text == "loop") {
        node->body_uses_loop = true;
      }
    }
    if (!body.ok()) return body.status();
    node->bodies.push_back(*std::move(body));
    if (end == "else") {
      FF_RETURN_IF_ERROR(ExpectBlockEnd());
      FF_ASSIGN_OR_RETURN(NodeList else_body, ParseBody({"endfor"}, &end));
      node->bodies.push_back(std::move(else_body));
    }
    FF_RETURN_IF_ERROR(ExpectBlockEnd());
    return node;
  }

  absl::StatusOr<std::unique_ptr<Node>> ParseSet(std::unique_ptr<Node> node) {
    FF_ASSIGN_OR_RETURN(std::string first, ExpectName());
    node->targets.push_back(std::move(first));
    if (SkipOperator(".")) {
      FF_ASSIGN_OR_RETURN(node->attribute, ExpectName());
    } else {
      while (SkipOperator(",")) {
        FF_ASSIGN_OR_RETURN(std::string target, ExpectName());
        node->targets.push_back(std::move(target));
      }
    }
    if (SkipOperator("=")) {
      node->kind = Node::Kind::kSet;
      FF_ASSIGN_OR_RETURN(node->expr, ParseTuple(/*with_condition=*/true));
      FF_RETURN_IF_ERROR(ExpectBlockEnd());
      return node;
    }
    if (node->targets.size() != 1 || !node->attribute.empty()) return Unexpected("'='");
    node->kind = Node::Kind::kSetBlock;
    FF_RETURN_IF_ERROR(ExpectBlockEnd());
    std::string end;
    FF_ASSIGN_OR_RETURN(NodeList body, ParseBody({"endset"}, &end));
    FF_RETURN_IF_ERROR(ExpectBlockEnd());
    node->bodies.push_back(std::move(body));
    return node;
  }

  absl::StatusOr<std::unique_ptr<Node>> ParseMacro(std::unique_ptr<Node> node) {
    node->kind = Node::Kind::kMacro;
    FF_ASSIGN_OR_RETURN(node->name, ExpectName());
    FF_RETURN_IF_ERROR(ExpectOperator("("));
    while (!IsOperator(")")) {
      if (!node->parameters.empty()) FF_RETURN_IF_ERROR(ExpectOperator(","));
      MacroParameter parameter;
      FF_ASSIGN_OR_RETURN(parameter.name, ExpectName());
      if (SkipOperator("=")) {
        FF_ASSIGN_OR_RETURN(parameter.default_value, ParseExpression(/*with_condition=*/true));
      }
      node->parameters.push_back(std::move(parameter));
    }
    Advance();
    FF_RETURN_IF_ERROR(ExpectBlockEnd());
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;  // break/continue do not cross a macro's boundary
    std::string end;
    absl::StatusOr<NodeList> body = ParseBody({"endmacro"}, &end);
    loop_depth_ = saved_loops;
    if (!body.ok()) return body.status();
    FF_RETURN_IF_ERROR(ExpectBlockEnd());
    node->bodies.push_back(*std::move(body));
    return node;
  }

  // expr[, expr ...]: a tuple when there is a comma.
  absl::StatusOr<ExprPtr> ParseTuple(bool with_condition) {
    const size_t offset = Current().offset;
    FF_ASSIGN_OR_RETURN(ExprPtr first, ParseExpression(with_condition));
    if (!IsOperator(",")) return first;
    ExprPtr tuple = MakeExpr(Expr::Kind::kTuple, offset);
    tuple->children.push_back(std::move(first));
    while (SkipOperator(",")) {
      if (Current().kind == Token::Kind::kVariableEnd || Current().kind == Token::Kind::kBlockEnd)
        break;
      FF_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(with_condition));
      tuple->children.push_back(std::move(item));
    }
    return tuple;
  }

  absl::StatusOr<ExprPtr> ParseExpression(bool with_condition) {
    DepthGuard guard(&depth_);
    if (depth_ > kMaxTemplateNesting) return TooDeep();
    if (!with_condition) return ParseOr();
    const size_t offset = Current().offset;
    FF_ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
    while (SkipName("if")) {
      ExprPtr conditional = MakeExpr(Expr::Kind::kConditional, offset);
      FF_ASSIGN_OR_RETURN(ExprPtr condition, ParseOr());
      ExprPtr otherwise;
      if (SkipName("else")) {
        FF_ASSIGN_OR_RETURN(otherwise, ParseExpression(/*with_condition=*/true));
      }
      conditional->children.push_back(std::move(expr));
      conditional->children.push_back(std::move(condition));
      conditional->children.push_back(std::move(otherwise));
      expr = std::move(conditional);
    }
    return expr;
  }

  absl::StatusOr<ExprPtr> ParseOr() {
    FF_ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
    while (IsName("or")) {
      const size_t offset = Current().offset;
      Advance();
      FF_ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
      ExprPtr node = MakeExpr(Expr::Kind::kOr, offset);
      node->children.push_back(std::move(left));
      node->children.push_back(std::move(right));
      left = std::move(node);
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseAnd() {
    FF_ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
    while (IsName("and")) {
      const size_t offset = Current().offset;
      Advance();
      FF_ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
      ExprPtr node = MakeExpr(Expr::Kind::kAnd, offset);
      node->children.push_back(std::move(left));
      node->children.push_back(std::move(right));
      left = std::move(node);
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseNot() {
    if (IsName("not")) {
      DepthGuard guard(&depth_);
      if (depth_ > kMaxTemplateNesting) return TooDeep();
      ExprPtr node = MakeExpr(Expr::Kind::kUnary, Current().offset);
      node->name = "not";
      Advance();
      FF_ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
      node->children.push_back(std::move(operand));
      return node;
    }
    return ParseCompare();
  }

  absl::StatusOr<ExprPtr> ParseCompare() {
    const size_t offset = Current().offset;
    FF_ASSIGN_OR_RETURN(ExprPtr first, ParseMath1());
    ExprPtr compare;
    while (true) {
      std::string op;
      if (Current().kind == Token::Kind::kOperator &&
          (Current().text == "==" || Current().text == "!=" || Current().text == "<" ||
           Current().text == "<=" || Current().text == ">" || Current().text == ">=")) {
        op = Current().text;
        Advance();
      } else if (IsName("in")) {
        op = "in";
        Advance();
      } else if (IsName("not") && Peek().kind == Token::Kind::kName && Peek().text == "in") {
        op = "not in";
        Advance();
        Advance();
      } else {
        break;
      }
      if (compare == nullptr) {
        compare = MakeExpr(Expr::Kind::kCompare, offset);
        compare->children.push_back(std::move(first));
      }
      FF_ASSIGN_OR_RETURN(ExprPtr operand, ParseMath1());
      compare->operators.push_back(op);
      compare->children.push_back(std::move(operand));
    }
    return compare != nullptr ? std::move(compare) : std::move(first);
  }

  template <typename Next>
  absl::StatusOr<ExprPtr> ParseBinaryLevel(std::initializer_list<std::string_view> ops, Next next) {
    FF_ASSIGN_OR_RETURN(ExprPtr left, (this->*next)());
    while (true) {
      bool matched = false;
      for (std::string_view op : ops) matched = matched || IsOperator(op);
      if (!matched) return left;
      ExprPtr node = MakeExpr(Expr::Kind::kBinary, Current().offset);
      node->name = Current().text;
      Advance();
      FF_ASSIGN_OR_RETURN(ExprPtr right, (this->*next)());
      node->children.push_back(std::move(left));
      node->children.push_back(std::move(right));
      left = std::move(node);
    }
  }

  absl::StatusOr<ExprPtr> ParseMath1() {
    return ParseBinaryLevel({"+", "-"}, &Parser::ParseConcat);
  }
  absl::StatusOr<ExprPtr> ParseConcat() { return ParseBinaryLevel({"~"}, &Parser::ParseMath2); }
  absl::StatusOr<ExprPtr> ParseMath2() {
    return ParseBinaryLevel({"*", "/", "//", "%"}, &Parser::ParsePow);
  }
  absl::StatusOr<ExprPtr> ParsePow() {
    return ParseBinaryLevel({"**"}, &Parser::ParseUnaryWithFilters);
  }
  absl::StatusOr<ExprPtr> ParseUnaryWithFilters() { return ParseUnary(/*with_filter=*/true); }

  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter) {
    DepthGuard guard(&depth_);
    if (depth_ > kMaxTemplateNesting) return TooDeep();
    ExprPtr node;
    if (IsOperator("-") || IsOperator("+")) {
      node = MakeExpr(Expr::Kind::kUnary, Current().offset);
      node->name = Current().text;
      Advance();
      FF_ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(/*with_filter=*/false));
      node->children.push_back(std::move(operand));
    } else {
      FF_ASSIGN_OR_RETURN(node, ParsePrimary());
    }
    FF_ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
    if (with_filter) {
      FF_ASSIGN_OR_RETURN(node, ParseFilterExpr(std::move(node)));
    }
    return node;
  }

  absl::StatusOr<ExprPtr> ParsePrimary() {
    DepthGuard guard(&depth_);
    if (depth_ > kMaxTemplateNesting) return TooDeep();
    const Token& token = Current();
    const size_t offset = token.offset;
    switch (token.kind) {
      case Token::Kind::kName: {
        ExprPtr node = MakeExpr(Expr::Kind::kLiteral, offset);
        if (token.text == "true" || token.text == "True") {
          node->literal = Value::Bool(true);
        } else if (token.text == "false" || token.text == "False") {
          node->literal = Value::Bool(false);
        } else if (token.text == "none" || token.text == "None") {
          node->literal = Value::None();
        } else {
          node->kind = Expr::Kind::kName;
          node->name = token.text;
        }
        Advance();
        return node;
      }
      case Token::Kind::kString: {
        std::string text;
        while (Current().kind == Token::Kind::kString) {  // adjacent literals concatenate
          text += Current().text;
          Advance();
        }
        ExprPtr node = MakeExpr(Expr::Kind::kLiteral, offset);
        node->literal = Value::String(std::move(text));
        return node;
      }
      case Token::Kind::kInteger: {
        ExprPtr node = MakeExpr(Expr::Kind::kLiteral, offset);
        node->literal = Value::Int(token.integer);
        Advance();
        return node;
      }
      case Token::Kind::kFloat: {
        ExprPtr node = MakeExpr(Expr::Kind::kLiteral, offset);
        node->literal = Value::Float(token.number);
        Advance();
        return node;
      }
      case Token::Kind::kOperator:
        if (token.text == "(") {
          Advance();
          if (SkipOperator(")")) return MakeExpr(Expr::Kind::kTuple, offset);
          FF_ASSIGN_OR_RETURN(ExprPtr inner, ParseTuple(/*with_condition=*/true));
          FF_RETURN_IF_ERROR(ExpectOperator(")"));
          return inner;
        }
        if (token.text == "[") {
          Advance();
          ExprPtr list = MakeExpr(Expr::Kind::kList, offset);
          while (!IsOperator("]")) {
            if (!list->children.empty()) {
              FF_RETURN_IF_ERROR(ExpectOperator(","));
              if (IsOperator("]")) break;
            }
            FF_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(/*with_condition=*/true));
            list->children.push_back(std::move(item));
          }
          Advance();
          return list;
        }
        if (token.text == "{") {
          Advance();
          ExprPtr dict = MakeExpr(Expr::Kind::kDict, offset);
          while (!IsOperator("}")) {
            if (!dict->children.empty()) {
              FF_RETURN_IF_ERROR(ExpectOperator(","));
              if (IsOperator("}")) break;
            }
            FF_ASSIGN_OR_RETURN(ExprPtr key, ParseExpression(/*with_condition=*/true));
            FF_RETURN_IF_ERROR(ExpectOperator(":"));
            FF_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(/*with_condition=*/true));
            dict->children.push_back(std::move(key));
            dict->children.push_back(std::move(value));
          }
          Advance();
          return dict;
        }
        break;
      default:
        break;
    }
    return Unexpected("an expression");
  }

  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node) {
    while (true) {
      if (IsOperator(".")) {
        const size_t offset = Current().offset;
        Advance();
        if (Current().kind == Token::Kind::kName) {
          ExprPtr attr = MakeExpr(Expr::Kind::kGetAttr, offset);
          attr->name = Current().text;
          attr->children.push_back(std::move(node));
          Advance();
          node = std::move(attr);
        } else if (Current().kind == Token::Kind::kInteger) {
          ExprPtr item = MakeExpr(Expr::Kind::kGetItem, offset);
          ExprPtr index = MakeExpr(Expr::Kind::kLiteral, offset);
          index->literal = Value::Int(Current().integer);
          item->children.push_back(std::move(node));
          item->children.push_back(std::move(index));
          Advance();
          node = std::move(item);
        } else {
          return Unexpected("an attribute name");
        }
      } else if (IsOperator("[")) {
        FF_ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node)));
      } else if (IsOperator("(")) {
        FF_ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
      } else {
        return node;
      }
    }
  }

  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr node) {
    const size_t offset = Current().offset;
    Advance();  // [
    ExprPtr parts[3];
    int colons = 0;
    for (int part = 0; part < 3; ++part) {
      if (!IsOperator(":") && !IsOperator("]")) {
        FF_ASSIGN_OR_RETURN(parts[part], ParseExpression(/*with_condition=*/true));
      }
      if (part < 2 && SkipOperator(":")) {
        ++colons;
        continue;
      }
      break;
    }
    FF_RETURN_IF_ERROR(ExpectOperator("]"));
    if (colons == 0) {
      if (parts[0] == nullptr) return ErrorAt(offset, "empty subscript");
      ExprPtr item = MakeExpr(Expr::Kind::kGetItem, offset);
      item->children.push_back(std::move(node));
      item->children.push_back(std::move(parts[0]));
      return item;
    }
    ExprPtr slice = MakeExpr(Expr::Kind::kSlice, offset);
    slice->children.push_back(std::move(node));
    for (ExprPtr& part : parts) slice->children.push_back(std::move(part));
    return slice;
  }

  // (args, name=value, ...) appended to `call`'s children.
  absl::Status ParseArguments(Expr* call) {
    FF_RETURN_IF_ERROR(ExpectOperator("("));
    bool first = true;
    while (!IsOperator(")")) {
      if (!first) {
        FF_RETURN_IF_ERROR(ExpectOperator(","));
        if (IsOperator(")")) break;
      }
      first = false;
      if (Current().kind == Token::Kind::kName && Peek().kind == Token::Kind::kOperator &&
          Peek().text == "=") {
        std::string name = Current().text;
        Advance();
        Advance();
        FF_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(/*with_condition=*/true));
        call->keyword_names.push_back(std::move(name));
        call->children.push_back(std::move(value));
      } else {
        if (!call->keyword_names.empty()) {
          return ErrorAt(Current().offset, "positional argument follows keyword argument");
        }
        if (IsOperator("*") || IsOperator("**")) {
          return ErrorAt(Current().offset, "*args and **kwargs are not supported");
        }
        FF_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(/*with_condition=*/true));
        call->children.push_back(std::move(value));
      }
    }
    Advance();
    return absl::OkStatus();
  }

  absl::StatusOr<ExprPtr> ParseCall(ExprPtr callee) {
    ExprPtr call = MakeExpr(Expr::Kind::kCall, Current().offset);
    call->children.push_back(std::move(callee));
    FF_RETURN_IF_ERROR(ParseArguments(call.get()));
    return call;
  }

  absl::StatusOr<std::string> ParseDottedName() {
    FF_ASSIGN_OR_RETURN(std::string name, ExpectName());
    while (IsOperator(".") && Peek().kind == Token::Kind::kName) {
      Advance();
      absl::StrAppend(&name, ".", Current().text);
      Advance();
    }
    return name;
  }

  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node) {
    while (true) {
      if (IsOperator("|")) {
        ExprPtr filter = MakeExpr(Expr::Kind::kFilter, Current().offset);
        Advance();
        FF_ASSIGN_OR_RETURN(filter->name, ParseDottedName());
        filter->children.push_back(std::move(node));
        if (IsOperator("(")) FF_RETURN_IF_ERROR(ParseArguments(filter.get()));
        node = std::move(filter);
      } else if (IsName("is")) {
        ExprPtr test = MakeExpr(Expr::Kind::kTest, Current().offset);
        Advance();
        test->negated = SkipName("not");
        FF_ASSIGN_OR_RETURN(test->name, ParseDottedName());
        test->children.push_back(std::move(node));
        const Token& next = Current();
        if (IsOperator("(")) {
          FF_RETURN_IF_ERROR(ParseArguments(test.get()));
        } else if ((next.kind == Token::Kind::kName || next.kind == Token::Kind::kString ||
                    next.kind == Token::Kind::kInteger || next.kind == Token::Kind::kFloat ||
                    IsOperator("[") || IsOperator("{")) &&
                   !IsName("else") && !IsName("or") && !IsName("and") && !IsName("if")) {
          if (IsName("is")) return ErrorAt(next.offset, "tests cannot be chained with 'is'");
          FF_ASSIGN_OR_RETURN(ExprPtr argument, ParsePrimary());
          FF_ASSIGN_OR_RETURN(argument, ParsePostfix(std::move(argument)));
          test->children.push_back(std::move(argument));
        }
        node = std::move(test);
      } else if (IsOperator("(")) {
        FF_ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
      } else {
        return node;
      }
    }
  }

  const std::vector<Token>& tokens_;
  std::string_view source_;
  size_t index_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

absl::StatusOr<NodeList> ParseTemplate(const std::vector<Token>& tokens, std::string_view source) {
  return Parser(tokens, source).ParseAll();
}

}  // namespace flatfleet::chat_template
