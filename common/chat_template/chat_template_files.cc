#include "common/chat_template/chat_template_files.h"

#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/strict_json.h"

namespace flatfleet::chat_template {
namespace fs = std::filesystem;
namespace {

absl::StatusOr<std::string> ReadSmallFile(const fs::path& path) {
  std::error_code error;
  const uintmax_t size = fs::file_size(path, error);
  if (error) return absl::NotFoundError(absl::StrCat(path.string(), ": ", error.message()));
  if (size > kMaxChatTemplateFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        path.string(), ": ", size, " bytes, more than the limit of ", kMaxChatTemplateFileBytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot be opened"));
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// A special token is a string or an AddedToken object {"content": "...", ...}; null or absent
// means the template does not get it.
absl::StatusOr<std::optional<std::string>> SpecialToken(const nlohmann::json& config,
                                                        const char* field,
                                                        const std::string& origin) {
  auto it = config.find(field);
  if (it == config.end() || it->is_null()) return std::optional<std::string>();
  if (it->is_string()) return std::optional<std::string>(it->get<std::string>());
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string()) {
      return std::optional<std::string>(content->get<std::string>());
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      origin, ": field '", field, "' must be a string or an object with a string 'content'"));
}

struct TokenizerConfig {
  ChatTemplateSource tokens;  // special tokens only
  std::optional<std::string> chat_template;
};

absl::StatusOr<std::optional<TokenizerConfig>> ReadTokenizerConfig(const fs::path& model_dir) {
  const fs::path path = model_dir / "tokenizer_config.json";
  std::error_code error;
  if (!fs::exists(path, error)) return std::optional<TokenizerConfig>();
  const std::string origin = path.string();
  FF_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
  FF_ASSIGN_OR_RETURN(nlohmann::json config, ParseStrictJson(text, origin));
  if (!config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": must hold a JSON object"));
  }
  TokenizerConfig result;
  FF_ASSIGN_OR_RETURN(result.tokens.bos_token, SpecialToken(config, "bos_token", origin));
  FF_ASSIGN_OR_RETURN(result.tokens.eos_token, SpecialToken(config, "eos_token", origin));
  FF_ASSIGN_OR_RETURN(result.tokens.unk_token, SpecialToken(config, "unk_token", origin));
  FF_ASSIGN_OR_RETURN(result.tokens.pad_token, SpecialToken(config, "pad_token", origin));
  auto field = config.find("chat_template");
  if (field == config.end() || field->is_null()) return std::optional<TokenizerConfig>(result);
  if (field->is_string()) {
    result.chat_template = field->get<std::string>();
  } else if (field->is_array()) {
    for (const nlohmann::json& entry : *field) {
      if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() ||
          !entry.contains("template") || !entry["template"].is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(origin,
                         ": field 'chat_template': each entry must be {\"name\": string, "
                         "\"template\": string}"));
      }
      if (entry["name"] == "default") result.chat_template = entry["template"].get<std::string>();
    }
    if (!result.chat_template.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, ": field 'chat_template' lists named templates but none is named 'default'"));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        origin, ": field 'chat_template' must be a string or a list of named templates"));
  }
  return std::optional<TokenizerConfig>(result);
}

}  // namespace

absl::StatusOr<std::optional<ChatTemplateSource>> LoadModelChatTemplate(const fs::path& model_dir) {
  FF_ASSIGN_OR_RETURN(std::optional<TokenizerConfig> config, ReadTokenizerConfig(model_dir));
  ChatTemplateSource source = config.has_value() ? config->tokens : ChatTemplateSource{};
  const fs::path jinja = model_dir / "chat_template.jinja";
  std::error_code error;
  if (fs::exists(jinja, error)) {
    FF_ASSIGN_OR_RETURN(source.source, ReadSmallFile(jinja));
    source.origin = jinja.string();
    return std::optional<ChatTemplateSource>(std::move(source));
  }
  if (!config.has_value() || !config->chat_template.has_value()) {
    return std::optional<ChatTemplateSource>();
  }
  source.source = *config->chat_template;
  source.origin = (model_dir / "tokenizer_config.json").string() + " (chat_template)";
  return std::optional<ChatTemplateSource>(std::move(source));
}

absl::StatusOr<ChatTemplateSource> LoadModelSpecialTokens(const fs::path& model_dir) {
  FF_ASSIGN_OR_RETURN(std::optional<TokenizerConfig> config, ReadTokenizerConfig(model_dir));
  if (!config.has_value()) return ChatTemplateSource{};
  return config->tokens;
}

absl::StatusOr<std::string> ReadChatTemplateFile(const fs::path& path) {
  return ReadSmallFile(path);
}

}  // namespace flatfleet::chat_template
