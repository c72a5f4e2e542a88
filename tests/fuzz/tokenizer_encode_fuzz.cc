// Fuzzes encoding with the shared HF fixture tokenizer: any valid UTF-8 must encode and decode
// back to itself; invalid UTF-8 must be rejected, never crash. Returns early when the fixture
// cannot be found ($FLATFLEET_SHARED_DIR, else ../shared next to the source tree).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/tokenizer/tokenizer.h"
#include "common/tokenizer/utf8.h"

namespace {

std::filesystem::path SharedDir() {
  if (const char* env = std::getenv("FLATFLEET_SHARED_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
#ifdef FLATFLEET_SOURCE_DIR
  return std::filesystem::path(FLATFLEET_SOURCE_DIR) / ".." / "shared";
#else
  // This file is <source>/tests/fuzz/tokenizer_encode_fuzz.cc.
  return std::filesystem::path(__FILE__).parent_path() / ".." / ".." / ".." / "shared";
#endif
}

const flatfleet::tokenizer::Tokenizer* FixtureTokenizer() {
  static const auto* const tokenizer = []() -> flatfleet::tokenizer::Tokenizer* {
    auto loaded = flatfleet::tokenizer::LoadTokenizer(SharedDir() / "fixtures" / "tokenizer-bpe");
    return loaded.ok() ? loaded->release() : nullptr;
  }();
  return tokenizer;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto* tok = FixtureTokenizer();
  if (tok == nullptr) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto ids = tok->Encode(text, /*add_special_tokens=*/size % 2 == 0);
  if (!flatfleet::tokenizer::IsValidUtf8(text)) {
    if (ids.ok()) __builtin_trap();  // invalid UTF-8 must be rejected
    return 0;
  }
  if (!ids.ok()) __builtin_trap();
  for (int32_t id : *ids) {
    if (id < 0 || id >= tok->vocab_size()) __builtin_trap();
  }
  // Byte-level BPE is lossless, and added tokens decode to their own text.
  if (tok->Decode(*ids) != text) __builtin_trap();
  tok->Decode(*ids, /*skip_special_tokens=*/true);
  return 0;
}
