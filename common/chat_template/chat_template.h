// Renders a conversation with a model's chat template the way transformers'
// apply_chat_template(messages, tokenize=False, add_generation_prompt=...) does: the template
// sees `messages`, `add_generation_prompt`, `tools` and `documents` (None unless given) and the
// tokenizer's special-token strings (bos_token, eos_token, ...; absent ones stay undefined).
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/chat_template/template.h"
#include "common/chat_template/value.h"

namespace flatfleet::chat_template {

struct ChatTemplateSource {
  std::string source;
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<std::string> unk_token;
  std::optional<std::string> pad_token;
  // Where the template came from, for messages ("DIR/tokenizer_config.json", a file, ...).
  std::string origin;
};

class ChatTemplate {
 public:
  // Parse errors name the origin and the position.
  static absl::StatusOr<ChatTemplate> Create(ChatTemplateSource source,
                                             TemplateOptions options = {});

  // `messages` is a list of dicts (role, content, ...); `tools` a list or None.
  absl::StatusOr<std::string> Render(const Value& messages, bool add_generation_prompt,
                                     const Value& tools = Value::None()) const;

  const ChatTemplateSource& source() const { return source_; }

 private:
  ChatTemplate(ChatTemplateSource source, Template parsed)
      : source_(std::move(source)), template_(std::move(parsed)) {}

  ChatTemplateSource source_;
  Template template_;
};

}  // namespace flatfleet::chat_template
