// The sentencepiece module (see sentencepiece_bridge.h): the only code that includes the
// sentencepiece headers, built as a separate shared object and opened at run time.
#include <sentencepiece_processor.h>

#include <exception>
#include <memory>
#include <string>

#include "common/tokenizer/sentencepiece_bridge.h"

namespace flatfleet::tokenizer {
namespace {

class SentencePieceProcessorBridge final : public SentencePieceBridge {
 public:
  explicit SentencePieceProcessorBridge(
      std::unique_ptr<sentencepiece::SentencePieceProcessor> processor)
      : processor_(std::move(processor)) {}

  bool Encode(std::string_view text, std::vector<int>& ids, std::string& error) const override {
    const auto status = processor_->Encode(text, &ids);
    if (!status.ok()) error = status.ToString();
    return status.ok();
  }
  bool Decode(const std::vector<int>& ids, std::string& text) const override {
    return processor_->Decode(ids, &text).ok();
  }
  int piece_size() const override { return processor_->GetPieceSize(); }
  int PieceToId(std::string_view piece) const override { return processor_->PieceToId(piece); }
  std::string IdToPiece(int id) const override { return processor_->IdToPiece(id); }
  int bos_id() const override { return processor_->bos_id(); }
  int eos_id() const override { return processor_->eos_id(); }
  bool IsControl(int id) const override { return processor_->IsControl(id); }
  bool IsUnknown(int id) const override { return processor_->IsUnknown(id); }

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

}  // namespace
}  // namespace flatfleet::tokenizer

extern "C" __attribute__((visibility("default"))) flatfleet::tokenizer::SentencePieceBridge*
flatfleet_sentencepiece_load(const char* path, std::string* error) {
  auto processor = std::make_unique<sentencepiece::SentencePieceProcessor>();
  try {
    const auto status = processor->Load(path);
    if (!status.ok()) {
      *error = status.ToString();
      return nullptr;
    }
  } catch (const std::exception& e) {
    // Should not happen now that the module binds to its own protobuf; kept as a clear error.
    *error = std::string("sentencepiece failed: ") + e.what();
    return nullptr;
  }
  return new flatfleet::tokenizer::SentencePieceProcessorBridge(std::move(processor));
}
