#include "common/tokenizer/sentencepiece_tokenizer.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace flatfleet::tokenizer {

SentencePieceTokenizer::SentencePieceTokenizer(std::unique_ptr<SentencePieceBridge> processor)
    : processor_(std::move(processor)) {}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::FromFile(
    const std::filesystem::path& path) {
  std::string error;
  auto processor = SentencePieceBridge::Load(path.string(), error);
  if (processor == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.string(), ": cannot load sentencepiece model: ", error));
  }
  return std::unique_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer(std::move(processor)));
}

absl::StatusOr<std::vector<int32_t>> SentencePieceTokenizer::Encode(std::string_view text,
                                                                    bool add_special_tokens) const {
  std::vector<int> pieces;
  std::string error;
  if (!processor_->Encode(text, pieces, error)) {
    return absl::InvalidArgumentError(absl::StrCat("sentencepiece encode: ", error));
  }
  std::vector<int32_t> ids;
  ids.reserve(pieces.size() + 1);
  if (add_special_tokens && processor_->bos_id() >= 0) ids.push_back(processor_->bos_id());
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  return ids;
}

std::string SentencePieceTokenizer::Decode(std::span<const int32_t> ids,
                                           bool skip_special_tokens) const {
  std::vector<int> kept;
  kept.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= processor_->piece_size()) continue;
    if (skip_special_tokens && processor_->IsControl(id)) continue;
    kept.push_back(id);
  }
  std::string text;
  if (!processor_->Decode(kept, text)) return "";
  return text;
}

int64_t SentencePieceTokenizer::vocab_size() const { return processor_->piece_size(); }

std::optional<int32_t> SentencePieceTokenizer::TokenToId(std::string_view token) const {
  const int id = processor_->PieceToId(token);
  // Unknown pieces map to the unk id; only accept the unk id for the unk piece itself.
  if (id < 0 || processor_->IdToPiece(id) != token) return std::nullopt;
  return id;
}

std::string SentencePieceTokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= processor_->piece_size()) return "";
  return processor_->IdToPiece(id);
}

std::optional<int32_t> SentencePieceTokenizer::bos_id() const {
  const int id = processor_->bos_id();
  if (id < 0) return std::nullopt;
  return id;
}

std::vector<int32_t> SentencePieceTokenizer::eos_ids() const {
  const int id = processor_->eos_id();
  if (id < 0) return {};
  return {id};
}

bool SentencePieceTokenizer::IsSpecial(int32_t id) const {
  if (id < 0 || id >= processor_->piece_size()) return false;
  return processor_->IsControl(id) || processor_->IsUnknown(id);
}

}  // namespace flatfleet::tokenizer
