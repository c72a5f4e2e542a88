// A parsed Jinja-subset template, rendered with transformers' chat-template environment:
// trim_blocks and lstrip_blocks on, one trailing newline dropped, undefined values printing
// as "", and the loop controls (break/continue) enabled. Parse once, render many times.
#pragma once

#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/chat_template/ast.h"
#include "common/chat_template/lexer.h"
#include "common/chat_template/render_limits.h"
#include "common/chat_template/value.h"

namespace flatfleet::chat_template {

struct TemplateOptions {
  LexerOptions syntax;
  RenderLimits limits;
  // strftime_now's clock (local time); null: the system clock.
  std::function<std::tm()> now;
};

class Template {
 public:
  // Syntax errors name the line and column.
  static absl::StatusOr<Template> Parse(std::string_view source, TemplateOptions options = {});

  // Errors: a raise_exception() in the template gives its message exactly (see
  // RaisedByTemplate); other failures name the position in the template.
  absl::StatusOr<std::string> Render(const ValueDict& variables) const;

  const std::string& source() const { return source_; }

 private:
  Template() = default;

  std::string source_;  // normalised; node offsets refer to it
  std::shared_ptr<const NodeList> nodes_;
  TemplateOptions options_;
};

// Whether a render failed through the template's own raise_exception().
bool RaisedByTemplate(const absl::Status& status);

}  // namespace flatfleet::chat_template
