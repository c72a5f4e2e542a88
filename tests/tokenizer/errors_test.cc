// Bad tokenizer files must give clear errors naming the file and the offending field.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/tokenizer/tokenizer.h"
#include "tests/tokenizer/inline_tokenizer.h"

namespace flatfleet::tokenizer {
namespace {

using ::testing::AllOf;
using testing::BpeModelJson;
using ::testing::HasSubstr;
using testing::json;
using testing::TokenizerJson;

json SmallModel() { return BpeModelJson({{"a", 0}, {"b", 1}, {"ab", 2}}, json::array({"a b"})); }

std::string LoadError(const json& document) {
  auto tok = BpeTokenizer::FromJsonText(document.dump(), "models/x/tokenizer.json");
  EXPECT_FALSE(tok.ok()) << "loaded although it should not";
  return tok.ok() ? "" : std::string(tok.status().message());
}

TEST(TokenizerErrorsTest, SmallModelLoads) {
  EXPECT_TRUE(BpeTokenizer::FromJsonText(TokenizerJson(SmallModel()).dump(), "t").ok());
}

TEST(TokenizerErrorsTest, MalformedJson) {
  auto tok = BpeTokenizer::FromJsonText("{\"model\": ", "models/x/tokenizer.json");
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(tok.status().message(),
              AllOf(HasSubstr("models/x/tokenizer.json"), HasSubstr("malformed JSON")));
  EXPECT_FALSE(BpeTokenizer::FromJsonText("[1, 2]", "t").ok());
  EXPECT_FALSE(BpeTokenizer::FromJsonText("", "t").ok());
}

TEST(TokenizerErrorsTest, MissingOrUnknownModel) {
  json document = TokenizerJson(SmallModel());
  document.erase("model");
  EXPECT_THAT(LoadError(document), AllOf(HasSubstr("models/x/tokenizer.json"), HasSubstr("model")));
  json word_piece = TokenizerJson(SmallModel());
  word_piece["model"]["type"] = "WordPiece";
  EXPECT_THAT(LoadError(word_piece), AllOf(HasSubstr("models/x/tokenizer.json"),
                                           HasSubstr("model.type"), HasSubstr("WordPiece")));
}

TEST(TokenizerErrorsTest, UnknownPreTokenizerNamesTypeAndPath) {
  json document = TokenizerJson(SmallModel());
  document["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  EXPECT_THAT(LoadError(document),
              AllOf(HasSubstr("pre_tokenizer.type"), HasSubstr("BertPreTokenizer")));
  document["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers", {{{"type", "ByteLevel"}}, {{"type", "UnicodeScripts"}}}}};
  EXPECT_THAT(LoadError(document),
              AllOf(HasSubstr("pre_tokenizer.pretokenizers[1].type"), HasSubstr("UnicodeScripts")));
}

TEST(TokenizerErrorsTest, MergesReferringToUnknownTokens) {
  json document = TokenizerJson(SmallModel());
  document["model"]["merges"] = json::array({"a b", "a zz"});
  EXPECT_THAT(LoadError(document), AllOf(HasSubstr("model.merges[1]"), HasSubstr("'zz'")));
  document["model"]["merges"] = json::array({json::array({"b", "a"})});  // "ba" not in vocab
  EXPECT_THAT(LoadError(document), AllOf(HasSubstr("model.merges[0]"), HasSubstr("'ba'")));
  document["model"]["merges"] = json::array({"ab"});
  EXPECT_THAT(LoadError(document), HasSubstr("model.merges[0]"));
  document["model"]["merges"] = json::array({42});
  EXPECT_THAT(LoadError(document), HasSubstr("model.merges[0]"));
}

TEST(TokenizerErrorsTest, InvalidRegex) {
  json document = TokenizerJson(SmallModel());
  document["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(\\p{L}+"}}}, {"behavior", "Isolated"}};
  EXPECT_THAT(LoadError(document),
              AllOf(HasSubstr("pre_tokenizer.pattern.Regex"), HasSubstr("invalid regex")));
  // \C would let a match split a UTF-8 character.
  document["pre_tokenizer"]["pattern"] = {{"Regex", "\\C"}};
  EXPECT_THAT(LoadError(document), HasSubstr("pre_tokenizer.pattern.Regex"));
  document["pre_tokenizer"]["pattern"] = {{"Regex", "a"}};
  document["pre_tokenizer"]["behavior"] = "Sideways";
  EXPECT_THAT(LoadError(document),
              AllOf(HasSubstr("pre_tokenizer.behavior"), HasSubstr("Sideways")));
}

TEST(TokenizerErrorsTest, UnsupportedComponents) {
  json nfc = TokenizerJson(SmallModel());
  nfc["normalizer"] = {{"type", "NFC"}};
  EXPECT_THAT(LoadError(nfc),
              AllOf(HasSubstr("normalizer.type"), HasSubstr("unsupported normalizer 'NFC'")));
  json decoder = TokenizerJson(SmallModel());
  decoder["decoder"] = {{"type", "WordPiece"}};
  EXPECT_THAT(LoadError(decoder), AllOf(HasSubstr("decoder.type"), HasSubstr("WordPiece")));
  json processor = TokenizerJson(SmallModel());
  processor["post_processor"] = {{"type", "Mystery"}};
  EXPECT_THAT(LoadError(processor), AllOf(HasSubstr("post_processor.type"), HasSubstr("Mystery")));
  json dropout = TokenizerJson(SmallModel());
  dropout["model"]["dropout"] = 0.1;
  EXPECT_THAT(LoadError(dropout), HasSubstr("model.dropout"));
}

TEST(TokenizerErrorsTest, WrongFieldTypes) {
  json vocab_array = TokenizerJson(SmallModel());
  vocab_array["model"]["vocab"] = json::array({"a"});
  EXPECT_THAT(LoadError(vocab_array), HasSubstr("model.vocab"));
  json string_id = TokenizerJson(SmallModel());
  string_id["model"]["vocab"]["a"] = "0";
  EXPECT_THAT(LoadError(string_id), HasSubstr("model.vocab.a"));
  json added = TokenizerJson(SmallModel());
  added["added_tokens"] = {{{"id", 5}, {"content", 7}}};
  EXPECT_THAT(LoadError(added), HasSubstr("added_tokens[0].content"));
  json flag = TokenizerJson(SmallModel());
  flag["model"]["byte_fallback"] = "yes";
  EXPECT_THAT(LoadError(flag), HasSubstr("model.byte_fallback"));
  json unk = TokenizerJson(SmallModel());
  unk["model"]["unk_token"] = "<unk>";
  EXPECT_THAT(LoadError(unk), AllOf(HasSubstr("model.unk_token"), HasSubstr("<unk>")));
  json template_ref = TokenizerJson(SmallModel());
  template_ref["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}}},
      {"special_tokens", json::object()}};
  EXPECT_THAT(LoadError(template_ref), HasSubstr("post_processor.special_tokens.<s>"));
}

TEST(TokenizerErrorsTest, DeepNestingIsRejectedNotOverflowed) {
  json pre_tokenizer = {{"type", "ByteLevel"}};
  for (int i = 0; i < 200; ++i) {
    pre_tokenizer = {{"type", "Sequence"}, {"pretokenizers", json::array({pre_tokenizer})}};
  }
  json document = TokenizerJson(SmallModel());
  document["pre_tokenizer"] = pre_tokenizer;
  EXPECT_THAT(LoadError(document), HasSubstr("nested too deeply"));
}

TEST(LoadTokenizerTest, MissingPathsAndFileNamesInErrors) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("ff_tokenizer_errors_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto missing = LoadTokenizer(dir / "nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  auto empty_dir = LoadTokenizer(dir);
  EXPECT_THAT(empty_dir.status().message(), HasSubstr("no tokenizer.json or tokenizer.model"));

  std::ofstream(dir / "tokenizer.json") << "{\"model\": {\"type\": \"Unigram\"}}";
  auto bad = LoadTokenizer(dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), AllOf(HasSubstr((dir / "tokenizer.json").string()),
                                            HasSubstr("model.type"), HasSubstr("Unigram")));
  std::ofstream(dir / "broken.model") << "not a protobuf";
  auto bad_model = LoadTokenizer(dir / "broken.model");
  ASSERT_FALSE(bad_model.ok());
  EXPECT_THAT(bad_model.status().message(), HasSubstr("broken.model"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace flatfleet::tokenizer
