// Runs a parsed template: evaluates expressions, executes statements into the output, keeps
// the variable scopes (for bodies and macros get their own; namespace() objects are shared),
// and enforces the render limits.
#pragma once

#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/chat_template/ast.h"
#include "common/chat_template/render_limits.h"
#include "common/chat_template/value.h"

namespace flatfleet::chat_template {

// Payload set on the status of raise_exception(): the message is the template's own.
inline constexpr char kRaisedByTemplatePayload[] = "flatfleet.chat_template/raised";

struct EvaluatorEnvironment {
  RenderLimits limits;
  // strftime_now's clock (local time); tests fix it.
  std::function<std::tm()> now;
};

class Evaluator {
 public:
  Evaluator(std::string_view source, const EvaluatorEnvironment& environment);

  absl::StatusOr<std::string> Render(const NodeList& nodes, const ValueDict& variables);

  // For filters, tests and globals.
  WorkBudget& budget() { return budget_; }
  std::tm Now() const;
  absl::StatusOr<bool> ApplyTest(std::string_view name, const Value& value,
                                 const std::vector<Value>& arguments);
  absl::StatusOr<Value> ApplyFilter(std::string_view name, const Value& value, CallArgs& args);
  // value.name as Jinja resolves it: a method, else the item; undefined when neither exists.
  absl::StatusOr<Value> GetAttribute(const Value& object, std::string_view name);
  // value[key]: the item, else an attribute of that name; undefined when neither exists.
  absl::StatusOr<Value> GetItem(const Value& object, const Value& key);

 private:
  using Scope = absl::flat_hash_map<std::string, Value>;
  enum class Flow { kNormal, kBreak, kContinue };

  absl::StatusOr<Flow> Execute(const NodeList& nodes, std::string& out);
  absl::StatusOr<Flow> ExecuteNode(const Node& node, std::string& out);
  absl::StatusOr<Flow> ExecuteFor(const Node& node, std::string& out);
  absl::Status ExecuteSet(const Node& node, Value value);
  absl::Status Append(std::string& out, std::string_view text);
  absl::StatusOr<Value> Evaluate(const Expr& expr);
  absl::StatusOr<Value> EvaluateUnpositioned(const Expr& expr);
  absl::StatusOr<CallArgs> EvaluateArguments(const Expr& expr, size_t first);
  absl::StatusOr<Value> CallMacro(const Node& macro, CallArgs& args);
  Value Lookup(const std::string& name) const;
  void Assign(const std::string& name, Value value);
  absl::Status Positioned(const absl::Status& status, size_t offset) const;

  std::string_view source_;
  const EvaluatorEnvironment& environment_;
  WorkBudget budget_;
  Scope globals_;
  std::vector<std::shared_ptr<Scope>> scopes_;
  int call_depth_ = 0;
};

}  // namespace flatfleet::chat_template
