// Trains a tiny sentencepiece model and encodes with sentencepiece's own processor, as the
// reference for SentencePieceTokenizer. Kept free of Abseil: the sentencepiece headers declare
// their own absl::string_view (see common/tokenizer/sentencepiece_bridge.h).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace flatfleet::tokenizer::testing {

// Trains a ~100-piece model on generated text in `dir`; returns the .model path, or an empty
// path with `error` set.
std::filesystem::path TrainTinySentencePieceModel(const std::filesystem::path& dir,
                                                  std::string& error);

// The ids sentencepiece's SentencePieceProcessor gives `text` (empty on failure).
std::vector<int> ReferenceSentencePieceIds(const std::filesystem::path& model,
                                           const std::string& text);

}  // namespace flatfleet::tokenizer::testing
