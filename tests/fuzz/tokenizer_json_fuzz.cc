// Fuzzes tokenizer.json parsing; whatever loads is also used to encode and decode some text.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/tokenizer/bpe_tokenizer.h"
#include "common/tokenizer/utf8.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto tokenizer = flatfleet::tokenizer::BpeTokenizer::FromJsonText(input, "fuzz.json");
  if (!tokenizer.ok()) return 0;
  const auto& tok = **tokenizer;
  std::vector<std::string> texts = {"Hello world 123 <s> caf\xC3\xA9  \n\t x", ""};
  // The document itself is a handy text that contains the tokenizer's own tokens.
  if (flatfleet::tokenizer::IsValidUtf8(input)) texts.emplace_back(input.substr(0, 512));
  for (const std::string& text : texts) {
    for (bool add_special_tokens : {false, true}) {
      auto ids = tok.Encode(text, add_special_tokens);
      if (!ids.ok()) continue;
      tok.Decode(*ids);
      tok.Decode(*ids, /*skip_special_tokens=*/true);
    }
  }
  // Arbitrary ids, including ones outside the vocabulary.
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < size && ids.size() < 64; i += 2) {
    ids.push_back(static_cast<int32_t>(data[i] | (data[i + 1] << 8)) - 256);
  }
  tok.Decode(ids);
  for (int32_t id : ids) {
    tok.IdToToken(id);
    tok.IsSpecial(id);
  }
  return 0;
}
