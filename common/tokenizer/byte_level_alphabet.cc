#include "common/tokenizer/byte_level_alphabet.h"

#include "common/tokenizer/utf8.h"

namespace flatfleet::tokenizer {

ByteLevelAlphabet::ByteLevelAlphabet() {
  code_point_to_byte_.fill(-1);
  const auto keeps_itself = [](int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  char32_t next_extra = 0x100;
  for (int b = 0; b < 256; ++b) {
    const char32_t cp = keeps_itself(b) ? static_cast<char32_t>(b) : next_extra++;
    AppendUtf8(cp, byte_to_char_[b]);
    code_point_to_byte_[cp] = b;
  }
}

const ByteLevelAlphabet& ByteLevelAlphabet::Get() {
  static const ByteLevelAlphabet* const alphabet = new ByteLevelAlphabet();
  return *alphabet;
}

void ByteLevelAlphabet::Encode(std::string_view bytes, std::string& out) const {
  for (char c : bytes) out += byte_to_char_[static_cast<uint8_t>(c)];
}

std::optional<std::string> ByteLevelAlphabet::Decode(std::string_view token) const {
  std::string bytes;
  bytes.reserve(token.size());
  for (size_t pos = 0; pos < token.size();) {
    const size_t length = Utf8SequenceLength(token, pos);
    if (length == 0) return std::nullopt;
    const char32_t cp = DecodeUtf8At(token, pos, length);
    if (cp >= code_point_to_byte_.size() || code_point_to_byte_[cp] < 0) return std::nullopt;
    bytes.push_back(static_cast<char>(code_point_to_byte_[cp]));
    pos += length;
  }
  return bytes;
}

}  // namespace flatfleet::tokenizer
