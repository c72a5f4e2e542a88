#include "common/chat_template/evaluator.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template/filters.h"
#include "common/chat_template/globals.h"
#include "common/chat_template/lexer.h"
#include "common/chat_template/methods.h"
#include "common/chat_template/operators.h"
#include "common/chat_template/value_format.h"
#include "common/chat_template/value_tests.h"
#include "common/status_macros.h"

namespace flatfleet::chat_template {
namespace {

constexpr char kPositionedPayload[] = "flatfleet.chat_template/positioned";

// Whether `value` holds (at any depth) the namespace `target` or a function. Namespaces are the
// only mutable values and values are reference-counted, so a namespace that held itself
// (directly or through another one or a bound method) would never be freed: such assignments
// are refused. A value reachable from a namespace was built without cycles, so this ends.
bool WouldFormCycle(const Value& value, const ValueDict* target) {
  switch (value.kind()) {
    case Value::Kind::kCallable:
      return true;
    case Value::Kind::kList:
      for (const Value& item : value.list()) {
        if (WouldFormCycle(item, target)) return true;
      }
      return false;
    case Value::Kind::kNamespace:
      if (&value.dict() == target) return true;
      [[fallthrough]];
    case Value::Kind::kDict:
      for (const auto& [unused, item] : value.dict().entries()) {
        if (WouldFormCycle(item, target)) return true;
      }
      return false;
    default:
      return false;
  }
}

// Keyword argument `name`, or positional argument `index`, or undefined.
Value Argument(const CallArgs& args, size_t index, std::string_view name) {
  for (const auto& [key, value] : args.keyword) {
    if (key == name) return value;
  }
  return index < args.positional.size() ? args.positional[index] : Value();
}

}  // namespace

Evaluator::Evaluator(std::string_view source, const EvaluatorEnvironment& environment)
    : source_(source), environment_(environment), budget_(environment.limits) {
  AddGlobals(*this, globals_);
}

std::tm Evaluator::Now() const {
  if (environment_.now) return environment_.now();
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  return local;
}

absl::Status Evaluator::Positioned(const absl::Status& status, size_t offset) const {
  if (status.ok() || status.GetPayload(kPositionedPayload).has_value() ||
      status.GetPayload(kRaisedByTemplatePayload).has_value()) {
    return status;
  }
  absl::Status positioned(
      status.code(), absl::StrCat("template error at ", DescribePosition(source_, offset), ": ",
                                  status.message()));
  positioned.SetPayload(kPositionedPayload, absl::Cord("1"));
  return positioned;
}

absl::StatusOr<std::string> Evaluator::Render(const NodeList& nodes, const ValueDict& variables) {
  auto root = std::make_shared<Scope>();
  for (const auto& [name, value] : variables.entries()) (*root)[name] = value;
  scopes_ = {root};
  std::string out;
  FF_ASSIGN_OR_RETURN(Flow flow, Execute(nodes, out));
  (void)flow;
  return out;
}

Value Evaluator::Lookup(const std::string& name) const {
  for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
    auto found = (*it)->find(name);
    if (found != (*it)->end()) return found->second;
  }
  auto global = globals_.find(name);
  if (global != globals_.end()) return global->second;
  return Value::Undefined(name);
}

void Evaluator::Assign(const std::string& name, Value value) {
  (*scopes_.back())[name] = std::move(value);
}

absl::Status Evaluator::Append(std::string& out, std::string_view text) {
  if (out.size() + text.size() > environment_.limits.max_output_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the output exceeds ", environment_.limits.max_output_bytes, " bytes"));
  }
  FF_RETURN_IF_ERROR(budget_.ChargeString(text.size()));
  out.append(text);
  return absl::OkStatus();
}

absl::StatusOr<Evaluator::Flow> Evaluator::Execute(const NodeList& nodes, std::string& out) {
  for (const std::unique_ptr<Node>& node : nodes) {
    FF_ASSIGN_OR_RETURN(Flow flow, ExecuteNode(*node, out));
    if (flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

absl::StatusOr<Evaluator::Flow> Evaluator::ExecuteNode(const Node& node, std::string& out) {
  switch (node.kind) {
    case Node::Kind::kText:
      FF_RETURN_IF_ERROR(Append(out, node.text));
      return Flow::kNormal;
    case Node::Kind::kOutput: {
      FF_ASSIGN_OR_RETURN(Value value, Evaluate(*node.expr));
      FF_RETURN_IF_ERROR(Append(out, ToPythonStr(value)));
      return Flow::kNormal;
    }
    case Node::Kind::kIf:
      for (size_t i = 0; i < node.conditions.size(); ++i) {
        FF_ASSIGN_OR_RETURN(Value condition, Evaluate(*node.conditions[i]));
        if (condition.Truthy()) return Execute(node.bodies[i], out);
      }
      if (node.bodies.size() > node.conditions.size()) return Execute(node.bodies.back(), out);
      return Flow::kNormal;
    case Node::Kind::kFor:
      return ExecuteFor(node, out);
    case Node::Kind::kSet: {
      FF_ASSIGN_OR_RETURN(Value value, Evaluate(*node.expr));
      FF_RETURN_IF_ERROR(Positioned(ExecuteSet(node, std::move(value)), node.offset));
      return Flow::kNormal;
    }
    case Node::Kind::kSetBlock: {
      std::string captured;
      FF_ASSIGN_OR_RETURN(Flow flow, Execute(node.bodies[0], captured));
      (void)flow;
      Assign(node.targets[0], Value::String(std::move(captured)));
      return Flow::kNormal;
    }
    case Node::Kind::kMacro: {
      const Node* macro = &node;
      Assign(node.name, Value::Function(node.name, [this, macro](CallArgs& args) {
               return CallMacro(*macro, args);
             }));
      return Flow::kNormal;
    }
    case Node::Kind::kBreak:
      return Flow::kBreak;
    case Node::Kind::kContinue:
      return Flow::kContinue;
    case Node::Kind::kScope:
      return Execute(node.bodies[0], out);
  }
  return Flow::kNormal;
}

absl::Status Evaluator::ExecuteSet(const Node& node, Value value) {
  if (!node.attribute.empty()) {
    Value target = Lookup(node.targets[0]);
    if (!target.is_namespace()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot assign attribute on non-namespace object '", node.targets[0], "'"));
    }
    if (WouldFormCycle(value, &target.dict())) {
      return absl::UnimplementedError(
          "a namespace attribute cannot hold that namespace itself or a function");
    }
    target.mutable_namespace().Set(node.attribute, std::move(value));
    return absl::OkStatus();
  }
  if (node.targets.size() == 1) {
    Assign(node.targets[0], std::move(value));
    return absl::OkStatus();
  }
  FF_ASSIGN_OR_RETURN(ValueList items, IterateValue(value, budget_));
  if (items.size() != node.targets.size()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot unpack ", items.size(), " values into ",
                                                   node.targets.size(), " names"));
  }
  for (size_t i = 0; i < items.size(); ++i) Assign(node.targets[i], std::move(items[i]));
  return absl::OkStatus();
}

absl::StatusOr<Evaluator::Flow> Evaluator::ExecuteFor(const Node& node, std::string& out) {
  FF_ASSIGN_OR_RETURN(Value iterable, Evaluate(*node.expr));
  absl::StatusOr<ValueList> all = IterateValue(iterable, budget_);
  if (!all.ok()) return Positioned(all.status(), node.expr->offset);

  scopes_.push_back(std::make_shared<Scope>());
  struct PopScope {
    std::vector<std::shared_ptr<Scope>>& scopes;
    ~PopScope() { scopes.pop_back(); }
  } pop{scopes_};

  auto bind = [&](const Value& item) -> absl::Status {
    if (node.targets.size() == 1) {
      Assign(node.targets[0], item);
      return absl::OkStatus();
    }
    absl::StatusOr<ValueList> parts = IterateValue(item, budget_);
    if (!parts.ok()) return Positioned(parts.status(), node.offset);
    if (parts->size() != node.targets.size()) {
      return Positioned(
          absl::InvalidArgumentError(absl::StrCat("cannot unpack ", parts->size(), " values into ",
                                                  node.targets.size(), " loop variables")),
          node.offset);
    }
    for (size_t i = 0; i < parts->size(); ++i) Assign(node.targets[i], (*parts)[i]);
    return absl::OkStatus();
  };

  // The `if` of a filtered loop runs first, so loop.length/last count only kept items.
  ValueList items;
  if (node.condition != nullptr) {
    for (const Value& item : *all) {
      FF_RETURN_IF_ERROR(Positioned(budget_.ChargeIteration(), node.offset));
      FF_RETURN_IF_ERROR(bind(item));
      FF_ASSIGN_OR_RETURN(Value keep, Evaluate(*node.condition));
      if (keep.Truthy()) items.push_back(item);
    }
  } else {
    items = *std::move(all);
  }

  const int64_t length = static_cast<int64_t>(items.size());
  // Jinja runs the else block unless some iteration reached the end of the body (an empty
  // loop, but also one whose every iteration ended in break or continue).
  bool body_completed = false;
  for (int64_t i = 0; i < length; ++i) {
    FF_RETURN_IF_ERROR(Positioned(budget_.ChargeIteration(), node.offset));
    FF_RETURN_IF_ERROR(bind(items[i]));
    if (!node.body_uses_loop) {
      FF_ASSIGN_OR_RETURN(Flow flow, Execute(node.bodies[0], out));
      body_completed = body_completed || flow == Flow::kNormal;
      if (flow == Flow::kBreak) break;
      continue;
    }
    ValueDict loop;
    loop.Set("index", Value::Int(i + 1));
    loop.Set("index0", Value::Int(i));
    loop.Set("revindex", Value::Int(length - i));
    loop.Set("revindex0", Value::Int(length - i - 1));
    loop.Set("first", Value::Bool(i == 0));
    loop.Set("last", Value::Bool(i == length - 1));
    loop.Set("length", Value::Int(length));
    loop.Set("depth", Value::Int(1));
    loop.Set("depth0", Value::Int(0));
    loop.Set("previtem", i > 0 ? items[i - 1] : Value::Undefined("previtem"));
    loop.Set("nextitem", i + 1 < length ? items[i + 1] : Value::Undefined("nextitem"));
    loop.Set("cycle", Value::Function("cycle", [i](CallArgs& args) -> absl::StatusOr<Value> {
               if (args.positional.empty()) {
                 return absl::InvalidArgumentError("no items for cycling given");
               }
               return args.positional[i % args.positional.size()];
             }));
    Assign("loop", Value::Dict(std::move(loop)));
    FF_ASSIGN_OR_RETURN(Flow flow, Execute(node.bodies[0], out));
    body_completed = body_completed || flow == Flow::kNormal;
    if (flow == Flow::kBreak) break;
  }
  if (!body_completed && node.bodies.size() > 1) {
    FF_ASSIGN_OR_RETURN(Flow flow, Execute(node.bodies[1], out));
    (void)flow;
  }
  return Flow::kNormal;
}

absl::StatusOr<Value> Evaluator::CallMacro(const Node& macro, CallArgs& args) {
  if (args.positional.size() > macro.parameters.size()) {
    return absl::InvalidArgumentError(absl::StrCat("macro '", macro.name, "' takes not more than ",
                                                   macro.parameters.size(), " argument(s)"));
  }
  if (call_depth_ >= environment_.limits.max_call_depth) {
    return absl::ResourceExhaustedError(
        absl::StrCat("macro calls nested deeper than ", environment_.limits.max_call_depth));
  }
  auto frame = std::make_shared<Scope>();
  for (const auto& [key, unused] : args.keyword) {
    bool known = false;
    for (const MacroParameter& p : macro.parameters) known = known || p.name == key;
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat(
          "macro '", macro.name, "' was invoked with unknown keyword argument '", key, "'"));
    }
  }
  // Macros see the template's top-level variables and their own parameters.
  std::vector<std::shared_ptr<Scope>> saved = std::move(scopes_);
  scopes_ = {saved.front(), frame};
  ++call_depth_;
  absl::StatusOr<std::string> body = [&]() -> absl::StatusOr<std::string> {
    for (size_t i = 0; i < macro.parameters.size(); ++i) {
      const MacroParameter& parameter = macro.parameters[i];
      Value value = Argument(args, i, parameter.name);
      if (value.is_undefined() && i >= args.positional.size()) {
        if (parameter.default_value != nullptr) {
          FF_ASSIGN_OR_RETURN(value, Evaluate(*parameter.default_value));
        } else {
          value = Value::Undefined(parameter.name);
        }
      }
      (*frame)[parameter.name] = std::move(value);
    }
    std::string out;
    FF_ASSIGN_OR_RETURN(Flow flow, Execute(macro.bodies[0], out));
    (void)flow;
    return out;
  }();
  --call_depth_;
  scopes_ = std::move(saved);
  if (!body.ok()) return body.status();
  return Value::String(*std::move(body));
}

absl::StatusOr<Value> Evaluator::Evaluate(const Expr& expr) {
  absl::StatusOr<Value> value = EvaluateUnpositioned(expr);
  if (!value.ok()) return Positioned(value.status(), expr.offset);
  return value;
}

absl::StatusOr<CallArgs> Evaluator::EvaluateArguments(const Expr& expr, size_t first) {
  CallArgs args;
  const size_t keyword_start = expr.children.size() - expr.keyword_names.size();
  for (size_t i = first; i < expr.children.size(); ++i) {
    FF_ASSIGN_OR_RETURN(Value value, Evaluate(*expr.children[i]));
    if (i < keyword_start) {
      args.positional.push_back(std::move(value));
    } else {
      args.keyword.emplace_back(expr.keyword_names[i - keyword_start], std::move(value));
    }
  }
  return args;
}

absl::StatusOr<bool> Evaluator::ApplyTest(std::string_view name, const Value& value,
                                          const std::vector<Value>& arguments) {
  return RunTest(*this, name, value, arguments);
}

absl::StatusOr<Value> Evaluator::ApplyFilter(std::string_view name, const Value& value,
                                             CallArgs& args) {
  return RunFilter(*this, name, value, args);
}

absl::StatusOr<Value> Evaluator::GetAttribute(const Value& object, std::string_view name) {
  if (object.is_undefined()) return UndefinedError(object);
  std::optional<Value> method = BoundMethod(*this, object, name);
  if (method.has_value()) return *method;
  if (object.is_dict() || object.is_namespace()) {
    const Value* found = object.dict().Find(name);
    if (found != nullptr) return *found;
  }
  return Value::Undefined(std::string(name));
}

absl::StatusOr<Value> Evaluator::GetItem(const Value& object, const Value& key) {
  if (object.is_undefined()) return UndefinedError(object);
  if (object.is_dict() || object.is_namespace()) {
    if (key.is_string()) {
      const Value* found = object.dict().Find(key.string_value());
      if (found != nullptr) return *found;
      return GetAttribute(object, key.string_value());
    }
    return Value::Undefined(ToPythonStr(key));
  }
  if (object.is_list() || object.is_string()) {
    std::optional<Value> item = IndexSequence(object, key);
    if (item.has_value()) return *item;
    if (key.is_string()) return GetAttribute(object, key.string_value());
    return Value::Undefined(ToPythonStr(key));
  }
  if (key.is_string()) return GetAttribute(object, key.string_value());
  return Value::Undefined(ToPythonStr(key));
}

absl::StatusOr<Value> Evaluator::EvaluateUnpositioned(const Expr& expr) {
  switch (expr.kind) {
    case Expr::Kind::kLiteral:
      return expr.literal;
    case Expr::Kind::kName:
      return Lookup(expr.name);
    case Expr::Kind::kList:
    case Expr::Kind::kTuple: {
      ValueList items;
      for (const auto& child : expr.children) {
        FF_ASSIGN_OR_RETURN(Value item, Evaluate(*child));
        items.push_back(std::move(item));
      }
      FF_RETURN_IF_ERROR(budget_.ChargeItems(items.size()));
      if (expr.kind == Expr::Kind::kTuple) return Value::Tuple(std::move(items));
      return Value::List(std::move(items));
    }
    case Expr::Kind::kDict: {
      ValueDict dict;
      for (size_t i = 0; i + 1 < expr.children.size(); i += 2) {
        FF_ASSIGN_OR_RETURN(Value key, Evaluate(*expr.children[i]));
        FF_ASSIGN_OR_RETURN(Value value, Evaluate(*expr.children[i + 1]));
        if (!key.is_string()) {
          return absl::UnimplementedError("dict literal keys must be strings");
        }
        dict.Set(key.string_value(), std::move(value));
      }
      FF_RETURN_IF_ERROR(budget_.ChargeItems(dict.size()));
      return Value::Dict(std::move(dict));
    }
    case Expr::Kind::kGetAttr: {
      FF_ASSIGN_OR_RETURN(Value object, Evaluate(*expr.children[0]));
      return GetAttribute(object, expr.name);
    }
    case Expr::Kind::kGetItem: {
      FF_ASSIGN_OR_RETURN(Value object, Evaluate(*expr.children[0]));
      FF_ASSIGN_OR_RETURN(Value key, Evaluate(*expr.children[1]));
      return GetItem(object, key);
    }
    case Expr::Kind::kSlice: {
      FF_ASSIGN_OR_RETURN(Value object, Evaluate(*expr.children[0]));
      Value bounds[3];
      for (int i = 0; i < 3; ++i) {
        if (expr.children[i + 1] != nullptr) {
          FF_ASSIGN_OR_RETURN(bounds[i], Evaluate(*expr.children[i + 1]));
        }
      }
      return SliceSequence(object, bounds[0], bounds[1], bounds[2], budget_);
    }
    case Expr::Kind::kCall: {
      FF_ASSIGN_OR_RETURN(Value callee, Evaluate(*expr.children[0]));
      FF_ASSIGN_OR_RETURN(CallArgs args, EvaluateArguments(expr, 1));
      if (callee.is_undefined()) return UndefinedError(callee);
      if (!callee.is_callable()) {
        return absl::InvalidArgumentError(
            absl::StrCat("'", callee.TypeName(), "' object is not callable"));
      }
      return callee.callable().call(args);
    }
    case Expr::Kind::kFilter: {
      FF_ASSIGN_OR_RETURN(Value input, Evaluate(*expr.children[0]));
      FF_ASSIGN_OR_RETURN(CallArgs args, EvaluateArguments(expr, 1));
      return ApplyFilter(expr.name, input, args);
    }
    case Expr::Kind::kTest: {
      FF_ASSIGN_OR_RETURN(Value input, Evaluate(*expr.children[0]));
      FF_ASSIGN_OR_RETURN(CallArgs args, EvaluateArguments(expr, 1));
      FF_ASSIGN_OR_RETURN(bool result, ApplyTest(expr.name, input, args.positional));
      return Value::Bool(result != expr.negated);
    }
    case Expr::Kind::kUnary: {
      FF_ASSIGN_OR_RETURN(Value operand, Evaluate(*expr.children[0]));
      if (expr.name == "not") return Value::Bool(!operand.Truthy());
      if (operand.is_undefined()) return UndefinedError(operand);
      if (!operand.is_number()) {
        return absl::InvalidArgumentError(
            absl::StrCat("bad operand type for unary ", expr.name, ": '", operand.TypeName(), "'"));
      }
      if (expr.name == "+") return operand.is_bool() ? Value::Int(operand.int_value()) : operand;
      if (operand.is_float()) return Value::Float(-operand.float_value());
      if (operand.int_value() == INT64_MIN) {
        return absl::OutOfRangeError("integer result does not fit in 64 bits");
      }
      return Value::Int(-operand.int_value());
    }
    case Expr::Kind::kBinary: {
      FF_ASSIGN_OR_RETURN(Value left, Evaluate(*expr.children[0]));
      FF_ASSIGN_OR_RETURN(Value right, Evaluate(*expr.children[1]));
      return ApplyBinary(expr.name, left, right, budget_);
    }
    case Expr::Kind::kAnd: {
      FF_ASSIGN_OR_RETURN(Value left, Evaluate(*expr.children[0]));
      if (!left.Truthy()) return left;
      return Evaluate(*expr.children[1]);
    }
    case Expr::Kind::kOr: {
      FF_ASSIGN_OR_RETURN(Value left, Evaluate(*expr.children[0]));
      if (left.Truthy()) return left;
      return Evaluate(*expr.children[1]);
    }
    case Expr::Kind::kCompare: {
      FF_ASSIGN_OR_RETURN(Value left, Evaluate(*expr.children[0]));
      for (size_t i = 0; i < expr.operators.size(); ++i) {
        FF_ASSIGN_OR_RETURN(Value right, Evaluate(*expr.children[i + 1]));
        FF_ASSIGN_OR_RETURN(bool holds, ApplyCompare(expr.operators[i], left, right));
        if (!holds) return Value::Bool(false);
        left = std::move(right);
      }
      return Value::Bool(true);
    }
    case Expr::Kind::kConditional: {
      FF_ASSIGN_OR_RETURN(Value condition, Evaluate(*expr.children[1]));
      if (condition.Truthy()) return Evaluate(*expr.children[0]);
      if (expr.children[2] == nullptr) return Value::Undefined("conditional expression");
      return Evaluate(*expr.children[2]);
    }
  }
  return absl::InternalError("unknown expression kind");
}

}  // namespace flatfleet::chat_template
