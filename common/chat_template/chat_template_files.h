// Where a model's chat template comes from, as transformers finds it: chat_template.jinja in
// the model directory, else the `chat_template` field of tokenizer_config.json (a string, or a
// list of {"name", "template"} of which "default" is used); the special-token strings come
// from tokenizer_config.json either way.
#pragma once

#include <filesystem>
#include <optional>

#include "absl/status/statusor.h"
#include "common/chat_template/chat_template.h"

namespace flatfleet::chat_template {

// Files larger than this are refused (real templates are a few KiB).
inline constexpr size_t kMaxChatTemplateFileBytes = size_t{1} << 20;

// The model's template, or nullopt when the directory has none. A malformed
// tokenizer_config.json is an error naming the file and field.
absl::StatusOr<std::optional<ChatTemplateSource>> LoadModelChatTemplate(
    const std::filesystem::path& model_dir);

// The special-token strings of DIR/tokenizer_config.json (none when the file is absent), with
// an empty template: what a template given in place of the model's own (--chat-template) sees.
absl::StatusOr<ChatTemplateSource> LoadModelSpecialTokens(const std::filesystem::path& model_dir);

// A template file's contents (at most kMaxChatTemplateFileBytes); errors name the file.
absl::StatusOr<std::string> ReadChatTemplateFile(const std::filesystem::path& path);

}  // namespace flatfleet::chat_template
