// A sentencepiece tokenizer.model, through the system sentencepiece library.
#pragma once

#include <filesystem>
#include <memory>

#include "absl/status/statusor.h"
#include "common/tokenizer/sentencepiece_bridge.h"
#include "common/tokenizer/tokenizer.h"

namespace flatfleet::tokenizer {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> FromFile(
      const std::filesystem::path& path);
  ~SentencePieceTokenizer() override;

  // add_special_tokens prepends BOS (and appends nothing), as Llama/Mistral tokenizers do.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool add_special_tokens = false) const override;
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const override;
  int64_t vocab_size() const override;
  std::optional<int32_t> TokenToId(std::string_view token) const override;
  std::string IdToToken(int32_t id) const override;
  std::optional<int32_t> bos_id() const override;
  std::vector<int32_t> eos_ids() const override;
  // Control tokens (<s>, </s>, ...) and the unknown token.
  bool IsSpecial(int32_t id) const override;

 private:
  explicit SentencePieceTokenizer(std::unique_ptr<SentencePieceBridge> processor);
  std::unique_ptr<SentencePieceBridge> processor_;
};

}  // namespace flatfleet::tokenizer
