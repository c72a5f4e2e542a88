#include "common/chat_template/chat_template.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace flatfleet::chat_template {

absl::StatusOr<ChatTemplate> ChatTemplate::Create(ChatTemplateSource source,
                                                  TemplateOptions options) {
  absl::StatusOr<Template> parsed = Template::Parse(source.source, std::move(options));
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(),
                        absl::StrCat(source.origin, ": ", parsed.status().message()));
  }
  return ChatTemplate(std::move(source), *std::move(parsed));
}

absl::StatusOr<std::string> ChatTemplate::Render(const Value& messages, bool add_generation_prompt,
                                                 const Value& tools) const {
  ValueDict variables;
  variables.Set("messages", messages);
  variables.Set("tools", tools);
  variables.Set("documents", Value::None());
  variables.Set("add_generation_prompt", Value::Bool(add_generation_prompt));
  auto add_token = [&](const char* name, const std::optional<std::string>& token) {
    if (token.has_value()) variables.Set(name, Value::String(*token));
  };
  add_token("bos_token", source_.bos_token);
  add_token("eos_token", source_.eos_token);
  add_token("unk_token", source_.unk_token);
  add_token("pad_token", source_.pad_token);
  return template_.Render(variables);
}

}  // namespace flatfleet::chat_template
