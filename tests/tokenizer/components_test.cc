// Hand-checked cases for each normalizer, pre-tokenizer, model option, added-token flag,
// post-processor and decoder, on tiny tokenizer.json documents built inline.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/tokenizer/byte_level_alphabet.h"
#include "common/tokenizer/split_behavior.h"
#include "common/tokenizer/utf8.h"
#include "tests/tokenizer/inline_tokenizer.h"

namespace flatfleet::tokenizer {
namespace {

using testing::BpeModelJson;
using ::testing::ElementsAre;
using testing::json;
using testing::Load;
using testing::TokenizerJson;
using Ids = std::vector<int32_t>;

const std::string kMeta = "\xE2\x96\x81";  // "▁"

Ids EncodeOk(const Tokenizer& tok, std::string_view text, bool add_special_tokens = false) {
  auto ids = tok.Encode(text, add_special_tokens);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : Ids{};
}

json AddedToken(int id, std::string content, bool special = true) {
  return json{
      {"id", id},        {"content", std::move(content)}, {"single_word", false}, {"lstrip", false},
      {"rstrip", false}, {"normalized", !special},        {"special", special}};
}

// ---- Llama-2 style: Prepend/Replace normalizer, byte_fallback, TemplateProcessing, ----------
// ---- Replace/ByteFallback/Fuse/Strip decoder. --------------------------------------------------

json Llama2Json(bool byte_fallback, bool fuse_unk) {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  vocab[kMeta] = 259;
  vocab["h"] = 260;
  vocab["i"] = 261;
  vocab[kMeta + "h"] = 262;
  vocab[kMeta + "hi"] = 263;
  json model = BpeModelJson(
      vocab, json::array({json::array({kMeta, "h"}), json::array({kMeta + "h", "i"})}));
  model["unk_token"] = "<unk>";
  model["byte_fallback"] = byte_fallback;
  model["fuse_unk"] = fuse_unk;
  json document = TokenizerJson(model);
  document["added_tokens"] = {AddedToken(0, "<unk>"), AddedToken(1, "<s>"), AddedToken(2, "</s>")};
  document["normalizer"] = {
      {"type", "Sequence"},
      {"normalizers",
       {{{"type", "Prepend"}, {"prepend", kMeta}},
        {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kMeta}}}}};
  document["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair", json::array()},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}};
  document["decoder"] = {
      {"type", "Sequence"},
      {"decoders",
       {{{"type", "Replace"}, {"pattern", {{"String", kMeta}}}, {"content", " "}},
        {{"type", "ByteFallback"}},
        {{"type", "Fuse"}},
        {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  return document;
}

TEST(Llama2StyleTest, MergesAndByteFallback) {
  auto tok = Load(Llama2Json(/*byte_fallback=*/true, /*fuse_unk=*/true));
  ASSERT_NE(tok, nullptr);
  // "▁hi▁ü": ü (C3 BC) is not in the vocab and falls back to <0xC3>=3+0xC3, <0xBC>=3+0xBC.
  EXPECT_THAT(EncodeOk(*tok, "hi ü"), ElementsAre(263, 259, 3 + 0xC3, 3 + 0xBC));
  EXPECT_THAT(EncodeOk(*tok, "hi ü", true), ElementsAre(1, 263, 259, 3 + 0xC3, 3 + 0xBC));
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_THAT(tok->eos_ids(), ElementsAre(2));
  EXPECT_EQ(tok->vocab_size(), 264);
}

TEST(Llama2StyleTest, SpecialTokenInTextIsNotNormalized) {
  auto tok = Load(Llama2Json(true, true));
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(EncodeOk(*tok, "<s>hi"), ElementsAre(1, 263));
}

TEST(Llama2StyleTest, DecodeChain) {
  auto tok = Load(Llama2Json(true, true));
  ASSERT_NE(tok, nullptr);
  const Ids ids = {1, 263, 259, 3 + 0xC3, 3 + 0xBC};
  EXPECT_EQ(tok->Decode(ids), "<s> hi ü");
  EXPECT_EQ(tok->Decode(ids, /*skip_special_tokens=*/true), "hi ü");
  // An invalid byte run decodes to one U+FFFD per byte (HF's ByteFallback).
  EXPECT_EQ(tok->Decode(Ids{3 + 0xE2, 3 + 0x96}), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(tok->Decode(Ids{3 + 0xE2, 3 + 0x96, 3 + 0x81}), kMeta);
}

TEST(Llama2StyleTest, UnknownCharactersWithoutByteFallback) {
  auto fused = Load(Llama2Json(/*byte_fallback=*/false, /*fuse_unk=*/true));
  auto unfused = Load(Llama2Json(/*byte_fallback=*/false, /*fuse_unk=*/false));
  ASSERT_NE(fused, nullptr);
  ASSERT_NE(unfused, nullptr);
  EXPECT_THAT(EncodeOk(*fused, "hi üü"), ElementsAre(263, 259, 0));
  EXPECT_THAT(EncodeOk(*unfused, "hi üü"), ElementsAre(263, 259, 0, 0));
}

// ---- Metaspace pre-tokenizer and decoder ------------------------------------------------------

json MetaspaceJson(const std::string& prepend_scheme, bool split) {
  json vocab = {{"<s>", 0},       {kMeta, 1},       {"a", 2},        {"b", 3},
                {kMeta + "a", 4}, {kMeta + "b", 5}, {"a" + kMeta, 6}};
  // String-format merges; "a ▁" ranks first so that it wins when the text is not split.
  json document =
      TokenizerJson(BpeModelJson(vocab, json::array({"a " + kMeta, kMeta + " a", kMeta + " b"})));
  document["added_tokens"] = json::array({AddedToken(0, "<s>")});
  document["pre_tokenizer"] = {{"type", "Metaspace"},
                               {"replacement", kMeta},
                               {"prepend_scheme", prepend_scheme},
                               {"split", split}};
  document["decoder"] = {
      {"type", "Metaspace"}, {"replacement", kMeta}, {"prepend_scheme", prepend_scheme}};
  return document;
}

TEST(MetaspaceTest, SplitsBeforeEachReplacement) {
  auto tok = Load(MetaspaceJson("first", true));
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(EncodeOk(*tok, "a b"), ElementsAre(4, 5));
  EXPECT_EQ(tok->Decode(Ids{4, 5}), "a b");
}

TEST(MetaspaceTest, PrependSchemeFirstOnlyAtInputStart) {
  auto first = Load(MetaspaceJson("first", true));
  auto always = Load(MetaspaceJson("always", true));
  ASSERT_NE(first, nullptr);
  ASSERT_NE(always, nullptr);
  EXPECT_THAT(EncodeOk(*first, "<s>a b"), ElementsAre(0, 2, 5));
  EXPECT_THAT(EncodeOk(*always, "<s>a b"), ElementsAre(0, 4, 5));
  EXPECT_EQ(first->Decode(Ids{0, 2, 5}), "<s>a b");
}

TEST(MetaspaceTest, WithoutSplitMergesAcrossWords) {
  auto tok = Load(MetaspaceJson("first", false));
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(EncodeOk(*tok, "a b"), ElementsAre(1, 6, 3));
}

// ---- Byte-level vocabularies (GPT-2 style) ----------------------------------------------------

// Every byte's ByteLevel character gets id = byte value; extra tokens follow from 256.
json ByteVocab(const std::vector<std::string>& extra_tokens) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) {
    std::string mapped;
    ByteLevelAlphabet::Get().Encode(std::string(1, static_cast<char>(b)), mapped);
    vocab[mapped] = b;
  }
  for (size_t i = 0; i < extra_tokens.size(); ++i) vocab[extra_tokens[i]] = 256 + i;
  return vocab;
}

json ByteLevelJson(bool add_prefix_space, bool use_regex) {
  // "Ġ" is the ByteLevel character of the space byte.
  json document = TokenizerJson(BpeModelJson(ByteVocab({"\xC4\xA0"
                                                        "a",
                                                        "a\xC4\xA0"}),
                                             json::array({"a \xC4\xA0", "\xC4\xA0 a"})));
  document["pre_tokenizer"] = {
      {"type", "ByteLevel"}, {"add_prefix_space", add_prefix_space}, {"use_regex", use_regex}};
  document["decoder"] = {{"type", "ByteLevel"}};
  return document;
}

TEST(ByteLevelTest, PrefixSpaceAndGpt2Regex) {
  auto tok = Load(ByteLevelJson(true, true));
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(EncodeOk(*tok, "a a"), ElementsAre(256, 256));  // " a" | " a"
  EXPECT_EQ(tok->Decode(Ids{256, 256}), " a a");
}

TEST(ByteLevelTest, WithoutRegexTheWholeTextIsOneWord) {
  auto tok = Load(ByteLevelJson(true, false));
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(EncodeOk(*tok, "a a"), ElementsAre(' ', 257, 'a'));  // "Ġ" "aĠ" "a"
}

TEST(ByteLevelTest, WithoutPrefixSpace) {
  auto tok = Load(ByteLevelJson(false, true));
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(EncodeOk(*tok, "a a"), ElementsAre('a', 256));
}

TEST(ByteLevelTest, LossyDecodeOfInvalidBytes) {
  auto tok = Load(ByteLevelJson(false, true));
  ASSERT_NE(tok, nullptr);
  // E2 96 is a truncated 3-byte sequence: one U+FFFD (maximal subpart), then "a".
  EXPECT_EQ(tok->Decode(Ids{0xE2, 0x96, 'a'}),
            "\xEF\xBF\xBD"
            "a");
  EXPECT_EQ(tok->Decode(Ids{0xFF, 0xC3, '('}), "\xEF\xBF\xBD\xEF\xBF\xBD(");
}

// A byte-vocab tokenizer (no ByteLevel step, plain ASCII maps to itself) with `pre_tokenizer`.
std::unique_ptr<BpeTokenizer> AsciiTokenizer(json pre_tokenizer, std::vector<std::string> extra,
                                             json merges) {
  json document = TokenizerJson(BpeModelJson(ByteVocab(extra), merges));
  document["pre_tokenizer"] = std::move(pre_tokenizer);
  return Load(document);
}

TEST(DigitsTest, IndividualAndContiguous) {
  auto individual = AsciiTokenizer({{"type", "Digits"}, {"individual_digits", true}}, {"12"},
                                   json::array({"1 2"}));
  auto contiguous = AsciiTokenizer({{"type", "Digits"}, {"individual_digits", false}}, {"12"},
                                   json::array({"1 2"}));
  ASSERT_NE(individual, nullptr);
  ASSERT_NE(contiguous, nullptr);
  EXPECT_THAT(EncodeOk(*individual, "x123"), ElementsAre('x', '1', '2', '3'));
  EXPECT_THAT(EncodeOk(*contiguous, "x123"), ElementsAre('x', 256, '3'));
}

TEST(WhitespaceTest, WordsAndPunctuationSeparately) {
  auto split = AsciiTokenizer({{"type", "Whitespace"}}, {"i,"}, json::array({"i ,"}));
  auto unsplit = AsciiTokenizer(nullptr, {"i,"}, json::array({"i ,"}));
  ASSERT_NE(split, nullptr);
  ASSERT_NE(unsplit, nullptr);
  EXPECT_THAT(EncodeOk(*split, "hi, x"), ElementsAre('h', 'i', ',', 'x'));
  // The space byte's vocab entry is "Ġ", so a raw " " is unknown and, with no unk_token, is
  // dropped (as HF does).
  EXPECT_THAT(EncodeOk(*unsplit, "hi, x"), ElementsAre('h', 256, 'x'));
}

TEST(SplitTest, RegexWithInvertAndStringPattern) {
  // Keep only the runs of letters (invert + Removed drops what lies between them).
  auto letters = AsciiTokenizer({{"type", "Split"},
                                 {"pattern", {{"Regex", "\\p{L}+"}}},
                                 {"behavior", "Removed"},
                                 {"invert", true}},
                                {}, json::array());
  auto dashes =
      AsciiTokenizer({{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", "Removed"}},
                     {}, json::array());
  ASSERT_NE(letters, nullptr);
  ASSERT_NE(dashes, nullptr);
  EXPECT_THAT(EncodeOk(*letters, "a1-b"), ElementsAre('a', 'b'));
  EXPECT_THAT(EncodeOk(*dashes, "a-b--c"), ElementsAre('a', 'b', 'c'));
}

TEST(SplitBehaviorTest, AllBehaviorsOnHandCheckedInput) {
  // "a-b--c" with every "-" matched.
  const std::string text = "a-b--c";
  const std::vector<std::pair<size_t, size_t>> matches = {{1, 2}, {3, 4}, {4, 5}};
  const auto pieces = [&](SplitBehavior behavior, bool invert) {
    std::vector<std::string> out;
    for (auto [begin, end] : SplitRanges(text.size(), matches, behavior, invert)) {
      out.push_back(text.substr(begin, end - begin));
    }
    return out;
  };
  EXPECT_THAT(pieces(SplitBehavior::kIsolated, false), ElementsAre("a", "-", "b", "-", "-", "c"));
  EXPECT_THAT(pieces(SplitBehavior::kRemoved, false), ElementsAre("a", "b", "c"));
  EXPECT_THAT(pieces(SplitBehavior::kMergedWithPrevious, false), ElementsAre("a-", "b-", "-", "c"));
  EXPECT_THAT(pieces(SplitBehavior::kMergedWithNext, false), ElementsAre("a", "-b", "-", "-c"));
  EXPECT_THAT(pieces(SplitBehavior::kContiguous, false), ElementsAre("a", "-", "b", "--", "c"));
  EXPECT_THAT(pieces(SplitBehavior::kRemoved, true), ElementsAre("-", "-", "-"));
}

// ---- Added tokens -----------------------------------------------------------------------------

TEST(AddedTokensTest, StripSingleWordAndNormalizedFlags) {
  json document = TokenizerJson(BpeModelJson(ByteVocab({}), json::array()));
  json lstrip = AddedToken(300, "<m>");
  lstrip["lstrip"] = true;
  json rstrip = AddedToken(301, "<r>");
  rstrip["rstrip"] = true;
  json single_word = AddedToken(302, "ab", /*special=*/false);
  single_word["single_word"] = true;
  single_word["normalized"] = false;
  json normalized = AddedToken(303, kMeta + "x", /*special=*/false);  // matched after Replace
  document["added_tokens"] = {lstrip, rstrip, single_word, normalized};
  document["normalizer"] = {
      {"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kMeta}};
  auto tok = Load(document);
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(EncodeOk(*tok, "c <m>"), ElementsAre('c', 300));
  EXPECT_THAT(EncodeOk(*tok, "<r> c"), ElementsAre(301, 'c'));
  // The normalized " " ("▁") is not in this vocab and is dropped; "ab" inside "cab" is not a
  // single word.
  EXPECT_THAT(EncodeOk(*tok, "ab cab"), ElementsAre(302, 'c', 'a', 'b'));
  EXPECT_THAT(EncodeOk(*tok, "c x"), ElementsAre('c', 303));
  EXPECT_EQ(tok->vocab_size(), 304);
  EXPECT_TRUE(tok->IsSpecial(300));
  EXPECT_FALSE(tok->IsSpecial(302));
}

TEST(PostProcessorTest, SequenceWithSuffix) {
  json document = TokenizerJson(BpeModelJson(ByteVocab({"<s>", "</s>"}), json::array()));
  document["added_tokens"] = {AddedToken(256, "<s>"), AddedToken(257, "</s>")};
  document["post_processor"] = {
      {"type", "Sequence"},
      {"processors",
       {{{"type", "ByteLevel"}, {"trim_offsets", false}},
        {{"type", "TemplateProcessing"},
         {"single",
          {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
           {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
           {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
         {"special_tokens",
          {{"<s>", {{"id", "<s>"}, {"ids", {256}}, {"tokens", {"<s>"}}}},
           {"</s>", {{"id", "</s>"}, {"ids", {257}}, {"tokens", {"</s>"}}}}}}}}}};
  auto tok = Load(document);
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(EncodeOk(*tok, "a", true), ElementsAre(256, 'a', 257));
  EXPECT_THAT(EncodeOk(*tok, "a", false), ElementsAre('a'));
}

TEST(IgnoreMergesTest, WholeWordInVocabWins) {
  // Merges would give "ab" + "c", but with ignore_merges the word "abc" is taken as is.
  json model = BpeModelJson(ByteVocab({"ab", "abc", "bc"}), json::array({"a b", "b c"}));
  auto plain = Load(TokenizerJson(model));
  model["ignore_merges"] = true;
  auto ignoring = Load(TokenizerJson(model));
  ASSERT_NE(plain, nullptr);
  ASSERT_NE(ignoring, nullptr);
  EXPECT_THAT(EncodeOk(*plain, "abc"), ElementsAre(256, 'c'));
  EXPECT_THAT(EncodeOk(*ignoring, "abc"), ElementsAre(257));
}

TEST(MergeOrderTest, LowestRankFirstThenLeftmost) {
  // "aaa": the pair (a, a) occurs twice; the leftmost merges first -> "aa" "a".
  auto tok = Load(TokenizerJson(BpeModelJson(ByteVocab({"aa"}), json::array({"a a"}))));
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(EncodeOk(*tok, "aaa"), ElementsAre(256, 'a'));
  EXPECT_THAT(EncodeOk(*tok, "aaaa"), ElementsAre(256, 256));
}

TEST(DecoderTest, NoDecoderJoinsWithSpaces) {
  auto tok = Load(TokenizerJson(BpeModelJson(ByteVocab({}), json::array())));
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Decode(Ids{'a', 'b'}), "a b");
}

TEST(Utf8Test, LossyFollowsMaximalSubpartRule) {
  EXPECT_EQ(Utf8Lossy("ok"), "ok");
  EXPECT_EQ(Utf8Lossy("\xE2\x96"), "\xEF\xBF\xBD");
  EXPECT_EQ(Utf8Lossy("\xF0\x9F\x98"), "\xEF\xBF\xBD");
  EXPECT_EQ(Utf8Lossy("\xC3\x28"), "\xEF\xBF\xBD(");
  EXPECT_EQ(Utf8Lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(Utf8Lossy("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_TRUE(IsValidUtf8("\xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // above U+10FFFF
}

}  // namespace
}  // namespace flatfleet::tokenizer
