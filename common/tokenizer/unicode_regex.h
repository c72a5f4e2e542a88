// A compiled PCRE2 regular expression used by Split pre-tokenizers and Replace normalizers.
// Compiled with PCRE2_UTF | PCRE2_UCP so \p{L}, \s, \w and (?!\S) follow Unicode like the
// Oniguruma engine Hugging Face tokenizers uses.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace flatfleet::tokenizer {

class UnicodeRegex {
 public:
  static absl::StatusOr<UnicodeRegex> Compile(std::string_view pattern);
  // A regex matching `literal` verbatim (HF's String patterns).
  static absl::StatusOr<UnicodeRegex> Literal(std::string_view literal);

  // Byte ranges [begin, end) of all non-overlapping, non-empty matches in `text` (valid UTF-8),
  // left to right. Fails only when PCRE2 hits its match limit (pathological patterns).
  absl::StatusOr<std::vector<std::pair<size_t, size_t>>> FindAll(std::string_view text) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Compiled;
  UnicodeRegex(std::string pattern, std::shared_ptr<const Compiled> compiled)
      : pattern_(std::move(pattern)), compiled_(std::move(compiled)) {}

  std::string pattern_;
  std::shared_ptr<const Compiled> compiled_;  // immutable and thread-safe to match with
};

}  // namespace flatfleet::tokenizer
