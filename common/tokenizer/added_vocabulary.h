// The "added_tokens" of a tokenizer.json: tokens matched verbatim in the input before any
// pre-tokenization (special tokens like <|begin_of_text|> and user-added words).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/tokenizer/json_fields.h"

namespace flatfleet::tokenizer {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;       // the match swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool single_word = false;  // only matches when not inside a word
  bool normalized = false;   // matched in normalized text rather than in the raw input
};

// A piece of input: either plain text to tokenize or one added token.
struct AddedTokenSplit {
  size_t begin;
  size_t end;
  std::optional<int32_t> token_id;
};

class AddedVocabulary {
 public:
  static absl::StatusOr<AddedVocabulary> FromJson(const Json& json, std::string_view field);

  // Splits `text` at the leftmost-longest matches of the tokens whose `normalized` flag equals
  // `normalized`; the splits cover `text` in order (empty text splits are omitted).
  std::vector<AddedTokenSplit> Split(std::string_view text, bool normalized) const;

  const AddedToken* FindById(int32_t id) const;
  const AddedToken* FindByContent(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  bool has_normalized_tokens() const { return has_normalized_tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  absl::flat_hash_map<int32_t, size_t> index_by_id_;
  absl::flat_hash_map<std::string, size_t> index_by_content_;
  // Token indices by first byte, longest content first, for leftmost-longest matching.
  std::vector<std::vector<size_t>> candidates_by_first_byte_;
  bool has_normalized_tokens_ = false;
};

}  // namespace flatfleet::tokenizer
