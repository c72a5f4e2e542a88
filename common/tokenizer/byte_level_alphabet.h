// GPT-2's reversible byte <-> printable character mapping used by ByteLevel pre-tokenizers
// and decoders: printable Latin-1 bytes map to themselves, the rest to U+0100 upwards.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace flatfleet::tokenizer {

class ByteLevelAlphabet {
 public:
  static const ByteLevelAlphabet& Get();

  // Appends the mapped character of every byte of `bytes`.
  void Encode(std::string_view bytes, std::string& out) const;

  // Maps every character of `token` back to its byte; nullopt if some character is not part of
  // the alphabet (HF then keeps the token's raw bytes).
  std::optional<std::string> Decode(std::string_view token) const;

 private:
  ByteLevelAlphabet();
  std::array<std::string, 256> byte_to_char_;
  std::array<int, 512> code_point_to_byte_;  // all mapped code points are below U+0200
};

}  // namespace flatfleet::tokenizer
