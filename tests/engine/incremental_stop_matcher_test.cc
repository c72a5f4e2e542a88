// IncrementalStopMatcher against the definition it replaces: after each token, decode the whole
// completion and search it (FindStopString). On real text through the three tokenizer kinds
// (byte-level BPE with multi-byte characters, SentencePiece-style BPE, raw bytes), the matcher
// must report the same stop at the same token and its text must be the whole decode's.
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "worker/sampling/stop_conditions.h"

namespace flatfleet::engine {
namespace {

std::filesystem::path Shared() {
  const char* env = std::getenv("FLATFLEET_SHARED_DIR");
  return env ? env : FLATFLEET_SHARED_DIR;
}

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// Token by token, both ways; returns the token index where the stop fired (or -1).
int64_t RunBoth(const tokenizer::Tokenizer& tok, const std::vector<int32_t>& ids,
                const std::vector<std::string>& stops) {
  IncrementalStopMatcher matcher(tok, stops);
  std::vector<int32_t> prefix;
  for (size_t i = 0; i < ids.size(); ++i) {
    prefix.push_back(ids[i]);
    std::string whole = tok.Decode(prefix, /*skip_special_tokens=*/true);
    const std::optional<size_t> expected = FindStopString(whole, stops);
    const std::optional<size_t> got = matcher.Append(ids[i]);
    // The matcher holds back an incomplete trailing character, nothing else.
    EXPECT_TRUE(whole.starts_with(matcher.text())) << "after token " << i;
    if (!whole.ends_with(kReplacement)) EXPECT_EQ(matcher.text(), whole) << "after token " << i;
    EXPECT_EQ(got.has_value(), expected.has_value()) << "after token " << i;
    if (got && expected) {
      EXPECT_EQ(*got, *expected) << "after token " << i;
      return static_cast<int64_t>(i);
    }
    if (got || expected) return static_cast<int64_t>(i);
  }
  return -1;
}

struct TokenizerCase {
  const char* label;
  std::unique_ptr<tokenizer::Tokenizer> tok;
  bool multi_byte = true;  // its vocabulary covers non-ASCII text
};

std::vector<TokenizerCase> Tokenizers() {
  std::vector<TokenizerCase> cases;
  auto bpe = tokenizer::LoadTokenizer(Shared() / "fixtures/tokenizer-bpe");
  EXPECT_TRUE(bpe.ok()) << bpe.status();
  if (bpe.ok()) cases.push_back({"byte-level BPE", *std::move(bpe)});
  auto stories = tokenizer::LoadTokenizer(Shared() / "models/stories260K");
  EXPECT_TRUE(stories.ok()) << stories.status();
  if (stories.ok()) cases.push_back({"stories260K", *std::move(stories), false});
  cases.push_back({"bytes", tokenizer::MakeByteTokenizer()});
  return cases;
}

TEST(IncrementalStopMatcherTest, AgreesWithDecodingTheWholeCompletion) {
  for (const TokenizerCase& c : Tokenizers()) {
    SCOPED_TRACE(c.label);
    const std::string quote = c.multi_byte ? "\"héllo wörld\" — 日本語" : "\"hello world\"";
    const std::string text = "Once upon a time, Lily saw a big dog. The dog said: " + quote +
                             " ok!\nSpot ran to the park. They played all day. The end.";
    const std::string spanning = c.multi_byte ? "wörld\"" : "world\"";
    auto ids = c.tok->Encode(text, /*add_special_tokens=*/false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    // A stop late in the text, one spanning a multi-byte character, one absent, one at a
    // sentence boundary that appears early: each must fire at the same token both ways.
    EXPECT_GT(RunBoth(*c.tok, *ids, {"The end"}), 0);
    EXPECT_GT(RunBoth(*c.tok, *ids, {spanning}), 0);
    EXPECT_EQ(RunBoth(*c.tok, *ids, {"never in the text"}), -1);
    EXPECT_GT(RunBoth(*c.tok, *ids, {"played", "dog."}), 0);
    EXPECT_EQ(RunBoth(*c.tok, *ids, {}), -1);
  }
}

}  // namespace
}  // namespace flatfleet::engine
