// Keeps the sentencepiece headers away from Abseil: they declare their own absl::string_view,
// which collides with Debian's Abseil. Only sentencepiece_bridge.cc includes them, and this
// interface uses the standard library only.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace flatfleet::tokenizer {

class SentencePieceBridge {
 public:
  // nullptr (with `error` set) if the model cannot be loaded.
  static std::unique_ptr<SentencePieceBridge> Load(const std::string& path, std::string& error);
  ~SentencePieceBridge();

  bool Encode(std::string_view text, std::vector<int>& ids, std::string& error) const;
  bool Decode(const std::vector<int>& ids, std::string& text) const;
  int piece_size() const;
  int PieceToId(std::string_view piece) const;
  std::string IdToPiece(int id) const;
  int bos_id() const;
  int eos_id() const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;

 private:
  explicit SentencePieceBridge(std::unique_ptr<sentencepiece::SentencePieceProcessor> processor);
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

}  // namespace flatfleet::tokenizer
