#include "common/chat_template/template.h"

#include "common/chat_template/evaluator.h"
#include "common/chat_template/parser.h"
#include "common/status_macros.h"

namespace flatfleet::chat_template {

absl::StatusOr<Template> Template::Parse(std::string_view source, TemplateOptions options) {
  Template parsed;
  parsed.source_ = NormalizeTemplateSource(source, options.syntax);
  FF_ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(parsed.source_, options.syntax));
  FF_ASSIGN_OR_RETURN(NodeList nodes, ParseTemplate(tokens, parsed.source_));
  parsed.nodes_ = std::make_shared<const NodeList>(std::move(nodes));
  parsed.options_ = std::move(options);
  return parsed;
}

absl::StatusOr<std::string> Template::Render(const ValueDict& variables) const {
  EvaluatorEnvironment environment{options_.limits, options_.now};
  Evaluator evaluator(source_, environment);
  return evaluator.Render(*nodes_, variables);
}

bool RaisedByTemplate(const absl::Status& status) {
  return status.GetPayload(kRaisedByTemplatePayload).has_value();
}

}  // namespace flatfleet::chat_template
