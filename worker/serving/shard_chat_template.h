// The chat template a worker renders chat requests with, chosen when LoadShard loads the model:
// LoadShardRequest.chat_template (the coordinator's --chat-template) when set, else the model
// directory's own (chat_template.jinja or tokenizer_config.json), else none. BOS/EOS strings
// come from the model's tokenizer_config.json either way.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "common/chat_template/chat_template.h"
#include "flatfleet/v1/worker.pb.h"

namespace flatfleet::engine {

// Null when the model has no template (chat requests are then refused). A template that does
// not parse fails the load, naming where it came from and the position.
absl::StatusOr<std::shared_ptr<const chat_template::ChatTemplate>> LoadShardChatTemplate(
    const v1::LoadShardRequest& request);

}  // namespace flatfleet::engine
