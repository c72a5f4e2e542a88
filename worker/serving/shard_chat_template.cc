#include "worker/serving/shard_chat_template.h"

#include "common/chat_template/chat_template_files.h"
#include "common/status_macros.h"
#include "worker/serving/model_loader.h"

namespace flatfleet::engine {

absl::StatusOr<std::shared_ptr<const chat_template::ChatTemplate>> LoadShardChatTemplate(
    const v1::LoadShardRequest& request) {
  const bool has_directory = request.model_path() != kBuiltinDemoModel;
  std::optional<chat_template::ChatTemplateSource> source;
  if (!request.chat_template().empty()) {
    chat_template::ChatTemplateSource given;
    if (has_directory) {
      FF_ASSIGN_OR_RETURN(given, chat_template::LoadModelSpecialTokens(request.model_path()));
    }
    given.source = request.chat_template();
    given.origin = "the chat template given by --chat-template";
    source = std::move(given);
  } else if (has_directory) {
    FF_ASSIGN_OR_RETURN(source, chat_template::LoadModelChatTemplate(request.model_path()));
  }
  if (!source.has_value()) return std::shared_ptr<const chat_template::ChatTemplate>();
  FF_ASSIGN_OR_RETURN(chat_template::ChatTemplate parsed,
                      chat_template::ChatTemplate::Create(*std::move(source)));
  return std::make_shared<const chat_template::ChatTemplate>(std::move(parsed));
}

}  // namespace flatfleet::engine
