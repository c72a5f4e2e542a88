// What a streamed request may send: never text that later turns out to start a stop string,
// and, put together, exactly the final text up to the stop.
#include "worker/serving/partial_text_releaser.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/quant/test_random.h"
#include "worker/sampling/stop_conditions.h"

namespace flatfleet::engine {
namespace {

TEST(StopPrefixHoldBackTest, HoldsTheLongestSuffixThatStartsAStop) {
  EXPECT_EQ(StopPrefixHoldBack("hello wor", {"world"}), 3u);
  EXPECT_EQ(StopPrefixHoldBack("hello w", {"world", "wx"}), 1u);
  EXPECT_EQ(StopPrefixHoldBack("hello", {"world"}), 0u);
  // A whole stop string is not a proper prefix: the matcher reports it instead.
  EXPECT_EQ(StopPrefixHoldBack("abc", {"bc"}), 0u);
  EXPECT_EQ(StopPrefixHoldBack("aab", {"aaba", "ba"}), 3u);
  EXPECT_EQ(StopPrefixHoldBack("", {"x"}), 0u);
  EXPECT_EQ(StopPrefixHoldBack("x", {""}), 0u);
}

TEST(PartialTextReleaserTest, ReleasesUpToTheStopAcrossTokens) {
  auto tok = tokenizer::MakeByteTokenizer();
  PartialTextReleaser releaser(*tok, {"STOP"});
  std::string sent;
  std::vector<std::string> pieces;
  for (char c : std::string("ab STxSTOPyz")) {
    std::string piece = releaser.Append(static_cast<unsigned char>(c));
    if (!piece.empty()) pieces.push_back(piece);
    sent += piece;
  }
  EXPECT_EQ(sent, "ab STx");
  // "ST" was held while it could start "STOP", then released with the x that ruled it out.
  ASSERT_GE(pieces.size(), 2u);
  EXPECT_EQ(pieces.back(), "STx");
}

// Random texts over a small alphabet, so that stop strings and their prefixes occur often.
TEST(PartialTextReleaserTest, RandomTextsNeverReleasePastTheStop) {
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE("FLATFLEET_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto tok = tokenizer::MakeByteTokenizer();
  const auto random_string = [&](size_t min, size_t max) {
    std::string s(std::uniform_int_distribution<size_t>(min, max)(rng), 'a');
    for (char& c : s) c = "abc"[std::uniform_int_distribution<int>(0, 2)(rng)];
    return s;
  };
  for (int trial = 0; trial < 500; ++trial) {
    const std::string text = random_string(0, 40);
    std::vector<std::string> stops = {random_string(1, 4)};
    if (trial % 2 == 0) stops.push_back(random_string(2, 6));
    SCOPED_TRACE("text '" + text + "' stops '" + stops[0] + "'" +
                 (stops.size() > 1 ? " '" + stops[1] + "'" : ""));
    // What the engine ends with: it stops at the first token that completes a stop string,
    // keeping the text before where that stop starts.
    std::string final_text = text;
    size_t tokens = text.size();
    for (size_t n = 1; n <= text.size(); ++n) {
      if (std::optional<size_t> at = FindStopString(text.substr(0, n), stops)) {
        final_text = text.substr(0, *at);
        tokens = n;
        break;
      }
    }
    PartialTextReleaser releaser(*tok, stops);
    std::string sent;
    for (size_t fed = 0; fed < tokens; ++fed) {
      sent += releaser.Append(static_cast<unsigned char>(text[fed]));
      // Only text the final text keeps, never any of a stop string.
      ASSERT_EQ(sent, final_text.substr(0, sent.size()));
      // While no stop has completed, only a tail that may start one is held.
      const std::string so_far = text.substr(0, fed + 1);
      if (!FindStopString(so_far, stops)) {
        ASSERT_EQ(so_far.size() - sent.size(), StopPrefixHoldBack(so_far, stops));
      }
    }
    if (FindStopString(text, stops)) {
      EXPECT_EQ(sent, final_text);  // Stopped: all of it went out.
    } else {
      EXPECT_EQ(sent.size() + StopPrefixHoldBack(text, stops), text.size());
    }
  }
}

}  // namespace
}  // namespace flatfleet::engine
