// Fuzzes the chat-template interpreter: the input is a template, optionally followed by a NUL
// byte and the JSON messages to render it with. Any input must parse or fail cleanly, render
// or fail cleanly within the (here reduced) limits, and render the same way twice.
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string_view>

#include "common/chat_template/chat_template.h"
#include "common/chat_template/json_conversion.h"
#include "nlohmann/json.hpp"

namespace {

std::tm FixedNow() {
  std::tm now{};
  now.tm_year = 125;
  now.tm_mon = 2;
  now.tm_mday = 9;
  return now;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flatfleet::chat_template;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view source = input;
  std::string_view messages_json = R"([{"role": "system", "content": " sys "},
      {"role": "user", "content": "hi {{ x }}"}, {"role": "assistant", "content": "yo"}])";
  if (size_t nul = input.find('\0'); nul != std::string_view::npos) {
    source = input.substr(0, nul);
    messages_json = input.substr(nul + 1);
  }
  nlohmann::ordered_json parsed =
      nlohmann::ordered_json::parse(messages_json, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return 0;
  absl::StatusOr<Value> messages = ValueFromJson(parsed);
  if (!messages.ok()) return 0;

  TemplateOptions options;
  options.now = FixedNow;
  options.limits.max_output_bytes = 1 << 16;
  options.limits.max_string_bytes = 1 << 16;
  options.limits.max_list_items = 1 << 12;
  options.limits.max_loop_iterations = 1 << 14;
  options.limits.max_work_units = 1 << 22;
  ChatTemplateSource chat_source;
  chat_source.source = std::string(source);
  chat_source.bos_token = "<s>";
  chat_source.eos_token = "</s>";
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::Create(chat_source, options);
  if (!chat.ok()) return 0;
  absl::StatusOr<std::string> first = chat->Render(*messages, /*add_generation_prompt=*/true);
  absl::StatusOr<std::string> second = chat->Render(*messages, /*add_generation_prompt=*/true);
  if (first.ok() != second.ok()) __builtin_trap();
  if (first.ok()) {
    if (*first != *second) __builtin_trap();
    if (first->size() > options.limits.max_output_bytes) __builtin_trap();
  } else if (first.status().message() != second.status().message()) {
    __builtin_trap();
  }
  return 0;
}
