#include "common/tokenizer/sentencepiece_bridge.h"

#include <sentencepiece_processor.h>

#include <exception>
#include <string>

namespace flatfleet::tokenizer {

SentencePieceBridge::SentencePieceBridge(
    std::unique_ptr<sentencepiece::SentencePieceProcessor> processor)
    : processor_(std::move(processor)) {}

SentencePieceBridge::~SentencePieceBridge() = default;

std::unique_ptr<SentencePieceBridge> SentencePieceBridge::Load(const std::string& path,
                                                               std::string& error) {
  auto processor = std::make_unique<sentencepiece::SentencePieceProcessor>();
  try {
    const auto status = processor->Load(path);
    if (!status.ok()) {
      error = status.ToString();
      return nullptr;
    }
  } catch (const std::exception& e) {
    // Debian's libsentencepiece embeds protobuf-lite 3.14; in a process that loaded libprotobuf
    // 3.21 first (every gRPC program here) its version check throws instead of loading.
    error = std::string("sentencepiece cannot load models in this process: ") + e.what();
    return nullptr;
  }
  return std::unique_ptr<SentencePieceBridge>(new SentencePieceBridge(std::move(processor)));
}

bool SentencePieceBridge::Encode(std::string_view text, std::vector<int>& ids,
                                 std::string& error) const {
  const auto status = processor_->Encode(text, &ids);
  if (!status.ok()) error = status.ToString();
  return status.ok();
}

bool SentencePieceBridge::Decode(const std::vector<int>& ids, std::string& text) const {
  return processor_->Decode(ids, &text).ok();
}

int SentencePieceBridge::piece_size() const { return processor_->GetPieceSize(); }
int SentencePieceBridge::PieceToId(std::string_view piece) const {
  return processor_->PieceToId(piece);
}
std::string SentencePieceBridge::IdToPiece(int id) const { return processor_->IdToPiece(id); }
int SentencePieceBridge::bos_id() const { return processor_->bos_id(); }
int SentencePieceBridge::eos_id() const { return processor_->eos_id(); }
bool SentencePieceBridge::IsControl(int id) const { return processor_->IsControl(id); }
bool SentencePieceBridge::IsUnknown(int id) const { return processor_->IsUnknown(id); }

}  // namespace flatfleet::tokenizer
