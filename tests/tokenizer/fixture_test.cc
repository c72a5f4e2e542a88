// The shared HF fixture: every probe of encodings.json must match exactly, and decoding must
// give the text back.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/tokenizer/tokenizer.h"
#include "common/tokenizer/utf8.h"
#include "nlohmann/json.hpp"
#include "tests/tokenizer/test_paths.h"

namespace flatfleet::tokenizer {
namespace {

struct Probe {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<Probe> LoadProbes() {
  std::ifstream in(testing::FixtureTokenizerDir() / "encodings.json");
  std::stringstream contents;
  contents << in.rdbuf();
  std::vector<Probe> probes;
  for (const auto& entry : nlohmann::json::parse(contents.str())) {
    probes.push_back({entry["text"].get<std::string>(), entry["ids"].get<std::vector<int32_t>>()});
  }
  return probes;
}

class FixtureTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto loaded = LoadTokenizer(testing::FixtureTokenizerDir());
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    tokenizer_ = loaded->release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
  }
  static const Tokenizer& tok() { return *tokenizer_; }

 private:
  static Tokenizer* tokenizer_;
};

Tokenizer* FixtureTest::tokenizer_ = nullptr;

TEST_F(FixtureTest, AllProbesMatchHuggingFaceExactly) {
  const std::vector<Probe> probes = LoadProbes();
  ASSERT_FALSE(probes.empty());
  for (const Probe& probe : probes) {
    auto ids = tok().Encode(probe.text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, probe.ids) << "text: " << probe.text;
  }
}

TEST_F(FixtureTest, DecodeInvertsEncodeOnProbes) {
  for (const Probe& probe : LoadProbes()) {
    EXPECT_EQ(tok().Decode(probe.ids), probe.text);
  }
}

TEST_F(FixtureTest, VocabularyAndSpecialTokens) {
  EXPECT_EQ(tok().vocab_size(), 2000);
  EXPECT_EQ(tok().TokenToId("<|begin_of_text|>"), 0);
  EXPECT_EQ(tok().TokenToId("<|end_of_text|>"), 1);
  EXPECT_EQ(tok().IdToToken(1), "<|end_of_text|>");
  EXPECT_EQ(tok().TokenToId("no such token at all"), std::nullopt);
  EXPECT_TRUE(tok().IsSpecial(0));
  EXPECT_FALSE(tok().IsSpecial(41));
  EXPECT_EQ(tok().bos_id(), 0);
  EXPECT_THAT(tok().eos_ids(), ::testing::ElementsAre(1));
}

TEST_F(FixtureTest, SpecialTokensAreSplitOutOfTheText) {
  auto plain = tok().Encode("Hello world");
  auto with_tokens = tok().Encode("<|begin_of_text|>Hello world<|end_of_text|>");
  ASSERT_TRUE(plain.ok() && with_tokens.ok());
  std::vector<int32_t> expected = {0};
  expected.insert(expected.end(), plain->begin(), plain->end());
  expected.push_back(1);
  EXPECT_EQ(*with_tokens, expected);
  EXPECT_EQ(tok().Decode(*with_tokens), "<|begin_of_text|>Hello world<|end_of_text|>");
  EXPECT_EQ(tok().Decode(*with_tokens, /*skip_special_tokens=*/true), "Hello world");
}

TEST_F(FixtureTest, NoPostProcessorMeansNothingIsAdded) {
  // The fixture has post_processor: null, so add_special_tokens changes nothing (as in HF).
  EXPECT_EQ(*tok().Encode("Hello", true), *tok().Encode("Hello", false));
}

TEST_F(FixtureTest, InvalidUtf8IsRejected) { EXPECT_FALSE(tok().Encode("abc\xFF").ok()); }

TEST_F(FixtureTest, DecodeOfPartialCharacterUsesReplacementCharacter) {
  // "Ã" is the byte-level token for the lone byte 0xC3, the first half of "é".
  const auto lead_byte = tok().TokenToId("\xC3\x83");
  ASSERT_TRUE(lead_byte.has_value());
  EXPECT_EQ(tok().Decode(std::vector<int32_t>{*lead_byte}), "\xEF\xBF\xBD");
  EXPECT_EQ(tok().Decode(std::vector<int32_t>{*lead_byte, *lead_byte}), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST_F(FixtureTest, EncodesWikiTextQuicklyAndLosslessly) {
  std::ifstream in(testing::SharedDir() / "data" / "wikitext-2" / "test.txt", std::ios::binary);
  if (!in) GTEST_SKIP() << "WikiText-2 not found under the shared directory";
  std::stringstream contents;
  contents << in.rdbuf();
  const std::string text = contents.str();
  const auto start = std::chrono::steady_clock::now();
  auto ids = tok().Encode(text);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(ids.ok()) << ids.status();
  std::printf("encoded %zu bytes into %zu ids in %.3f s (%.1f MB/s)\n", text.size(), ids->size(),
              seconds, text.size() / seconds / 1e6);
  EXPECT_EQ(tok().Decode(*ids), text);
  EXPECT_LT(seconds, 20.0);  // a loose bound: this shared machine is slow and busy
}

std::string RandomUtf8(std::mt19937& rng, size_t code_points) {
  // Mixes ASCII (with whitespace, digits, punctuation), Latin-1, CJK and astral characters.
  std::uniform_int_distribution<int> kind(0, 9);
  std::string text;
  for (size_t i = 0; i < code_points; ++i) {
    char32_t cp;
    switch (kind(rng)) {
      case 0:
        cp = U" \t\n\r"[rng() % 4];
        break;
      case 1:
        cp = 0xA0 + rng() % 0x160;
        break;
      case 2:
        cp = 0x4E00 + rng() % 0x5000;
        break;
      case 3:
        cp = 0x1F300 + rng() % 0x300;
        break;
      case 4:
        cp = 0x0600 + rng() % 0x100;
        break;
      default:
        cp = 0x20 + rng() % 0x5F;
    }
    AppendUtf8(cp, text);
  }
  return text;
}

TEST_F(FixtureTest, DecodeInvertsEncodeOnRandomUtf8) {
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 500; ++trial) {
    const std::string text = RandomUtf8(rng, 1 + rng() % 40);
    auto ids = tok().Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(tok().Decode(*ids), text);
  }
}

}  // namespace
}  // namespace flatfleet::tokenizer
