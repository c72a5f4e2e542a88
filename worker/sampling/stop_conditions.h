// Stop strings: where the first of them starts in generated text.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/tokenizer/tokenizer.h"
#include "worker/sampling/sampling_params.h"

namespace flatfleet::engine {

// The ids that end a request's completion: its stop_token_ids, then the model's end-of-sequence
// ids unless ignore_eos (without repeats).
std::vector<int32_t> StopIds(const SamplingParams& params, std::span<const int32_t> eos_ids);

// Offset in `text` of the earliest occurrence of any stop string (empty strings ignored).
std::optional<size_t> FindStopString(std::string_view text, std::span<const std::string> stops);

// Stop strings on a completion that grows a token at a time, checked incrementally. Each token
// decodes only the tokens since the last complete character, after a few tokens of context
// (vLLM's prefix-offset scheme: byte-level BPE and SentencePiece decode a piece differently at
// the start of a text), and searches only the new text plus the longest stop string's length
// minus one bytes before it: a stop that was not there before must end in the new text. So a
// token costs O(its text), not a decode of the whole completion.
class IncrementalStopMatcher {
 public:
  IncrementalStopMatcher(const tokenizer::Tokenizer& tokenizer, std::vector<std::string> stops);

  // Adds a completion token. Returns the offset in text() where the earliest stop string starts
  // once one is complete.
  std::optional<size_t> Append(int32_t token);
  // The decoded completion so far, without a trailing incomplete multi-byte character.
  const std::string& text() const { return text_; }

 private:
  const tokenizer::Tokenizer& tokenizer_;
  std::vector<std::string> stops_;
  size_t longest_stop_ = 0;
  std::vector<int32_t> tokens_;
  size_t prefix_offset_ = 0;  // tokens before it are never decoded again
  size_t read_offset_ = 0;    // text_ covers the tokens before it
  std::string text_;
};

}  // namespace flatfleet::engine
