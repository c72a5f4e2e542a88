// A Hugging Face tokenizer.json with a BPE model: added tokens -> normalizer -> pre-tokenizer
// -> BPE -> post-processor for encoding, and the decoder chain for decoding.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/tokenizer/added_vocabulary.h"
#include "common/tokenizer/bpe_model.h"
#include "common/tokenizer/decoder.h"
#include "common/tokenizer/normalizer.h"
#include "common/tokenizer/post_processor.h"
#include "common/tokenizer/pre_tokenizer.h"
#include "common/tokenizer/tokenizer.h"

namespace flatfleet::tokenizer {

class BpeTokenizer final : public Tokenizer {
 public:
  // Parses tokenizer.json text; errors start with `source_name` (usually the file path).
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> FromJsonText(std::string_view json_text,
                                                                    std::string_view source_name);
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> FromFile(const std::filesystem::path& path);

  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool add_special_tokens = false) const override;
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const override;
  // The largest id (model or added token) + 1.
  int64_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> TokenToId(std::string_view token) const override;
  std::string IdToToken(int32_t id) const override;
  // The post-processor's first prefix id, else a conventionally named BOS token.
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  // Conventionally named end tokens present in the vocabulary (</s>, <|end_of_text|>, ...).
  std::vector<int32_t> eos_ids() const override { return eos_ids_; }
  bool IsSpecial(int32_t id) const override;

 private:
  BpeTokenizer() = default;
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> FromJson(const Json& json);
  // Normalized text without added tokens: pre-tokenize, then BPE every piece.
  absl::Status EncodeText(std::string text, bool at_input_start, std::vector<int32_t>& ids) const;

  AddedVocabulary added_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  SpecialTokenFrame special_frame_;
  std::unique_ptr<Decoder> decoder_;
  int64_t vocab_size_ = 0;
  std::optional<int32_t> bos_id_;
  std::vector<int32_t> eos_ids_;
};

}  // namespace flatfleet::tokenizer
