// Text <-> token id conversion. Implementations: tokenizer.json BPE (bpe_tokenizer.h),
// sentencepiece tokenizer.model (sentencepiece_tokenizer.h) and a byte tokenizer for the demo
// model (byte_tokenizer.h). Results equal Hugging Face tokenizers for supported configurations.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace flatfleet::tokenizer {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Splits `text` (which must be valid UTF-8) into ids. With `add_special_tokens` the
  // tokenizer's own prefix/suffix (e.g. BOS from a TemplateProcessing post-processor) is added.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                                      bool add_special_tokens = false) const = 0;

  // Turns ids back into text. Byte sequences that are not valid UTF-8 decode to U+FFFD like HF;
  // ids outside the vocabulary are skipped.
  virtual std::string Decode(std::span<const int32_t> ids,
                             bool skip_special_tokens = false) const = 0;

  // Number of ids (the largest id + 1, added tokens included).
  virtual int64_t vocab_size() const = 0;

  virtual std::optional<int32_t> TokenToId(std::string_view token) const = 0;
  // The token's string as stored in the vocabulary; empty for unknown ids.
  virtual std::string IdToToken(int32_t id) const = 0;

  // Beginning-of-sequence id, when the tokenizer defines one.
  virtual std::optional<int32_t> bos_id() const = 0;
  // End-of-sequence ids known to the tokenizer (may be empty; config.json may name others).
  virtual std::vector<int32_t> eos_ids() const = 0;

  // True for special/control tokens (those `skip_special_tokens` drops).
  virtual bool IsSpecial(int32_t id) const = 0;
};

// Loads `dir_or_file`: a tokenizer.json or tokenizer.model file, or a directory holding one
// (tokenizer.json is preferred when both exist).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::filesystem::path& dir_or_file);

// The demo model's tokenizer: ids 0..255 are the bytes themselves, 256 = <bos>, 257 = <eos>,
// 258 = <pad>; vocab_size() is 259. Encode never fails (any bytes are accepted).
std::unique_ptr<Tokenizer> MakeByteTokenizer();

}  // namespace flatfleet::tokenizer
