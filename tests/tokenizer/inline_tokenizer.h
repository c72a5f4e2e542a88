// Builds small tokenizer.json documents inline for hand-checked tests.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "common/tokenizer/bpe_tokenizer.h"
#include "nlohmann/json.hpp"

namespace flatfleet::tokenizer::testing {

using nlohmann::json;

// A tokenizer.json skeleton with the given model and nulls elsewhere.
inline json TokenizerJson(json model) {
  return json{{"version", "1.0"},         {"added_tokens", json::array()}, {"normalizer", nullptr},
              {"pre_tokenizer", nullptr}, {"post_processor", nullptr},     {"decoder", nullptr},
              {"model", std::move(model)}};
}

inline json BpeModelJson(json vocab, json merges) {
  return json{{"type", "BPE"},        {"vocab", std::move(vocab)}, {"merges", std::move(merges)},
              {"unk_token", nullptr}, {"fuse_unk", false},         {"byte_fallback", false}};
}

// Loads `document`; fails the calling test (via the returned nullptr) when it does not load.
inline std::unique_ptr<BpeTokenizer> Load(const json& document) {
  auto tokenizer = BpeTokenizer::FromJsonText(document.dump(), "inline tokenizer.json");
  if (!tokenizer.ok()) {
    ADD_FAILURE() << tokenizer.status();
    return nullptr;
  }
  return std::move(*tokenizer);
}

}  // namespace flatfleet::tokenizer::testing
