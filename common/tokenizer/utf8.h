// UTF-8 helpers shared by the tokenizers: validation, code point iteration and the lossy
// decoding that Hugging Face tokenizers applies to byte sequences (Rust's from_utf8_lossy).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace flatfleet::tokenizer {

inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

// Length of the well-formed UTF-8 sequence starting at text[pos], or 0 if it is ill-formed.
size_t Utf8SequenceLength(std::string_view text, size_t pos);

bool IsValidUtf8(std::string_view text);

// Replaces each maximal ill-formed subpart with U+FFFD, exactly like Rust's
// String::from_utf8_lossy (the Unicode "maximal subpart" practice), so decodes match HF.
std::string Utf8Lossy(std::string_view bytes);

// Appends the UTF-8 encoding of a code point (must be a valid scalar value).
void AppendUtf8(char32_t code_point, std::string& out);

// Decodes the code point of a well-formed sequence of `length` bytes at text[pos].
char32_t DecodeUtf8At(std::string_view text, size_t pos, size_t length);

}  // namespace flatfleet::tokenizer
