// tokenizer.model support, checked against sentencepiece's own processor on a model trained in
// the test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/tokenizer/tokenizer.h"
#include "tests/tokenizer/sentencepiece_reference.h"

namespace flatfleet::tokenizer {
namespace {

class SentencePieceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::filesystem::path(std::filesystem::temp_directory_path() /
                                     ("ff_sentencepiece_" + std::to_string(::getpid())));
    std::filesystem::create_directories(*dir_);
    std::string error;
    model_ = new std::filesystem::path(testing::TrainTinySentencePieceModel(*dir_, error));
    ASSERT_FALSE(model_->empty()) << error;
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
    delete model_;
  }
  static std::filesystem::path* dir_;
  static std::filesystem::path* model_;
};

std::filesystem::path* SentencePieceTest::dir_ = nullptr;
std::filesystem::path* SentencePieceTest::model_ = nullptr;

const char* const kTexts[] = {"the quick brown fox", "hello world, 42.", "lazy  dog   again",
                              "tokenmodelpiece",     " leading space",   "unseen ZQX chars ü"};

TEST_F(SentencePieceTest, IdsEqualSentencePieceProcessor) {
  auto tok = LoadTokenizer(*model_);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_GE((*tok)->vocab_size(), 50);
  for (const char* text : kTexts) {
    auto ids = (*tok)->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    const std::vector<int> reference = testing::ReferenceSentencePieceIds(*model_, text);
    ASSERT_FALSE(reference.empty());
    EXPECT_EQ(*ids, std::vector<int32_t>(reference.begin(), reference.end())) << text;
  }
}

TEST_F(SentencePieceTest, RoundTripAndSpecialTokens) {
  auto tok = LoadTokenizer(*model_);
  ASSERT_TRUE(tok.ok()) << tok.status();
  for (const char* text : {"the quick brown fox", "hello world, 42.", "river over the dog"}) {
    auto ids = (*tok)->Encode(text, /*add_special_tokens=*/true);
    ASSERT_TRUE(ids.ok());
    ASSERT_TRUE((*tok)->bos_id().has_value());
    EXPECT_EQ(ids->front(), *(*tok)->bos_id());
    EXPECT_TRUE((*tok)->IsSpecial(ids->front()));
    EXPECT_EQ((*tok)->Decode(*ids), text);
    EXPECT_EQ((*tok)->Decode(*ids, /*skip_special_tokens=*/true), text);
  }
  EXPECT_EQ((*tok)->TokenToId((*tok)->IdToToken(10)), 10);
  EXPECT_EQ((*tok)->TokenToId("definitely-not-a-piece"), std::nullopt);
  EXPECT_FALSE((*tok)->eos_ids().empty());
}

TEST_F(SentencePieceTest, DirectoryWithTokenizerModel) {
  const auto model_dir = *dir_ / "model_dir";
  std::filesystem::create_directories(model_dir);
  std::filesystem::copy_file(*model_, model_dir / "tokenizer.model",
                             std::filesystem::copy_options::overwrite_existing);
  auto tok = LoadTokenizer(model_dir);
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto ids = (*tok)->Encode("the lazy dog");
  ASSERT_TRUE(ids.ok());
  const std::vector<int> reference = testing::ReferenceSentencePieceIds(*model_, "the lazy dog");
  EXPECT_EQ(*ids, std::vector<int32_t>(reference.begin(), reference.end()));
}

#ifdef FLATFLEET_CLI_PATH
// Runs the flatfleet CLI; returns its exit status and puts stdout+stderr in `output`.
int RunCli(const std::string& arguments, std::string& output, const std::string& environment = "") {
  const std::string command =
      environment + " " + std::string(FLATFLEET_CLI_PATH) + " " + arguments + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[512];
  while (std::fgets(buffer, sizeof(buffer), pipe) != nullptr) output += buffer;
  return ::pclose(pipe);
}

// The flatfleet binary links gRPC and libprotobuf 3.21; sentencepiece (with its own protobuf-lite)
// must still load models there, through the module.
TEST_F(SentencePieceTest, GrpcProgramLoadsTokenizerModel) {
  const auto model_dir = *dir_ / "cli_model_dir";
  std::filesystem::create_directories(model_dir);
  std::filesystem::copy_file(*model_, model_dir / "tokenizer.model",
                             std::filesystem::copy_options::overwrite_existing);
  const std::string text = "the quick brown fox";
  std::string output;
  ASSERT_EQ(RunCli("tokenize --tokenizer " + model_dir.string() + " --text '" + text + "'", output),
            0)
      << output;
  const std::vector<int> reference = testing::ReferenceSentencePieceIds(*model_, text);
  ASSERT_FALSE(reference.empty());
  std::string expected;
  for (size_t i = 0; i < reference.size(); ++i) {
    expected += (i ? " " : "") + std::to_string(reference[i]);
  }
  EXPECT_EQ(output, expected + "\n");
}

TEST_F(SentencePieceTest, MissingModuleIsAClearError) {
  std::string output;
  EXPECT_NE(RunCli("tokenize --tokenizer " + model_->string() + " --text x", output,
                   "FLATFLEET_SENTENCEPIECE_MODULE=/nonexistent/libflatfleet_sentencepiece.so"),
            0);
  EXPECT_NE(output.find("cannot open the sentencepiece module"), std::string::npos) << output;
  EXPECT_NE(output.find("/nonexistent/libflatfleet_sentencepiece.so"), std::string::npos) << output;
}
#endif

}  // namespace
}  // namespace flatfleet::tokenizer
