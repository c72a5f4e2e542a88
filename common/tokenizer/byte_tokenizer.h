// A trivial tokenizer for the built-in demo model: one id per byte plus a few special ids
// (layout documented at MakeByteTokenizer in tokenizer.h).
#pragma once

#include "common/tokenizer/tokenizer.h"

namespace flatfleet::tokenizer {

class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr int32_t kBosId = 256;
  static constexpr int32_t kEosId = 257;
  static constexpr int32_t kPadId = 258;
  static constexpr int64_t kVocabSize = 259;

  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool add_special_tokens = false) const override;
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const override;
  int64_t vocab_size() const override { return kVocabSize; }
  std::optional<int32_t> TokenToId(std::string_view token) const override;
  std::string IdToToken(int32_t id) const override;
  std::optional<int32_t> bos_id() const override { return kBosId; }
  std::vector<int32_t> eos_ids() const override { return {kEosId}; }
  bool IsSpecial(int32_t id) const override { return id >= kBosId && id < kVocabSize; }
};

}  // namespace flatfleet::tokenizer
