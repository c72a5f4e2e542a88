// Where the tests find the shared fixtures: $FLATFLEET_SHARED_DIR, else the build-time path.
#pragma once

#include <cstdlib>
#include <filesystem>

namespace flatfleet::tokenizer::testing {

inline std::filesystem::path SharedDir() {
  if (const char* env = std::getenv("FLATFLEET_SHARED_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  return FLATFLEET_SHARED_DIR;
}

inline std::filesystem::path FixtureTokenizerDir() {
  return SharedDir() / "fixtures" / "tokenizer-bpe";
}

}  // namespace flatfleet::tokenizer::testing
