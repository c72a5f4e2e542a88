// WeightStore over a single file, a directory with model.safetensors, and sharded checkpoints
// described by model.safetensors.index.json.
#include <string>

#include "common/safetensors.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/checkpoint_test_util.h"

namespace flatfleet {
namespace {

using ::flatfleet::testing::HasError;
using ::flatfleet::testing::SeededRandom;
using ::flatfleet::testing::TemporaryDirectory;
using ::flatfleet::testing::WriteTextFile;
constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
constexpr absl::StatusCode kNotFound = absl::StatusCode::kNotFound;

class ShardedCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SCOPED_TRACE(::testing::Message() << "seed " << random_.seed());
    embed_ = Tensor({6, 4}, random_.Normal(24));
    norm_ = Tensor({4}, random_.Normal(4));
    head_ = Tensor({6, 4}, random_.Normal(24));
    ASSERT_TRUE(WriteSafetensors(dir() / "model-00001-of-00002.safetensors",
                                 {FromFloat32("embed", embed_, DType::kBF16),
                                  FromFloat32("norm", norm_, DType::kF32)})
                    .ok());
    ASSERT_TRUE(WriteSafetensors(dir() / "model-00002-of-00002.safetensors",
                                 {FromFloat32("head", head_, DType::kF16)})
                    .ok());
  }

  const std::filesystem::path& dir() const { return directory_.path(); }
  std::filesystem::path index_path() const { return dir() / "model.safetensors.index.json"; }
  void WriteIndex(const nlohmann::json& weight_map) {
    WriteTextFile(
        index_path(),
        nlohmann::json{{"metadata", {{"total_size", 1}}}, {"weight_map", weight_map}}.dump());
  }
  nlohmann::json GoodWeightMap() const {
    return {{"embed", "model-00001-of-00002.safetensors"},
            {"norm", "model-00001-of-00002.safetensors"},
            {"head", "model-00002-of-00002.safetensors"}};
  }

  SeededRandom random_;
  TemporaryDirectory directory_;
  Tensor embed_, norm_, head_;
};

TEST_F(ShardedCheckpointTest, LoadsEveryShard) {
  WriteIndex(GoodWeightMap());
  for (const auto& path : {dir(), index_path()}) {
    auto store = WeightStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ((*store)->TensorNames(), (std::vector<std::string>{"embed", "head", "norm"}));
    auto head = (*store)->LoadF32("head", {6, 4});
    ASSERT_TRUE(head.ok()) << head.status();
    for (int i = 0; i < 24; ++i) {
      EXPECT_EQ(head->vector()[i], HalfToFloat(FloatToHalf(head_.vector()[i])));
    }
    auto norm = (*store)->LoadF32("norm", {4});
    ASSERT_TRUE(norm.ok()) << norm.status();
    EXPECT_EQ(norm->vector(), norm_.vector());
    auto embed = (*store)->Get("embed");
    ASSERT_TRUE(embed.ok());
    EXPECT_EQ((*embed)->dtype, DType::kBF16);
    EXPECT_NE((*embed)->file.find("model-00001-of-00002.safetensors"), std::string::npos);
  }
}

TEST_F(ShardedCheckpointTest, IndexTakesPrecedenceAndSingleFileWorks) {
  // No index: a lone model.safetensors in the directory is used.
  SeededRandom random;
  Tensor single({2, 2}, random.Normal(4));
  ASSERT_TRUE(WriteSafetensors(dir() / "model.safetensors", {FromFloat32("only", single)}).ok());
  auto store = WeightStore::Open(dir());
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->TensorNames(), std::vector<std::string>{"only"});
  auto loaded = (*store)->LoadF32("only", {2, 2});
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->vector(), single.vector());
  WriteIndex(GoodWeightMap());
  store = WeightStore::Open(dir());
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->Find("only"), nullptr);
  EXPECT_NE((*store)->Find("embed"), nullptr);
}

TEST_F(ShardedCheckpointTest, RejectsEmptyDirectory) {
  TemporaryDirectory empty;
  EXPECT_TRUE(HasError(WeightStore::Open(empty.path()).status(), kNotFound,
                       {empty.path().string(), "model.safetensors"}));
  EXPECT_TRUE(HasError(WeightStore::Open(empty.path() / "nope").status(), kNotFound, {"nope"}));
}

TEST_F(ShardedCheckpointTest, RejectsMalformedIndex) {
  WriteTextFile(index_path(), R"({"weight_map": {"embed": )");
  EXPECT_TRUE(HasError(WeightStore::Open(dir()).status(), kInvalid,
                       {"model.safetensors.index.json", "JSON"}));
}

TEST_F(ShardedCheckpointTest, RejectsIndexWithoutWeightMap) {
  WriteTextFile(index_path(), R"({"metadata": {}})");
  EXPECT_TRUE(HasError(WeightStore::Open(dir()).status(), kInvalid,
                       {"model.safetensors.index.json", "weight_map"}));
  WriteTextFile(index_path(), R"([])");
  EXPECT_TRUE(
      HasError(WeightStore::Open(dir()).status(), kInvalid, {"model.safetensors.index.json"}));
}

TEST_F(ShardedCheckpointTest, RejectsNonStringShardName) {
  nlohmann::json weight_map = GoodWeightMap();
  weight_map["head"] = 2;
  WriteIndex(weight_map);
  EXPECT_TRUE(HasError(WeightStore::Open(dir()).status(), kInvalid,
                       {"model.safetensors.index.json", "'head'"}));
}

TEST_F(ShardedCheckpointTest, RejectsMissingShardFile) {
  nlohmann::json weight_map = GoodWeightMap();
  weight_map["head"] = "model-00003-of-00002.safetensors";
  WriteIndex(weight_map);
  EXPECT_TRUE(
      HasError(WeightStore::Open(dir()).status(), kNotFound,
               {"model.safetensors.index.json", "model-00003-of-00002.safetensors", "'head'"}));
}

TEST_F(ShardedCheckpointTest, RejectsTensorAbsentFromItsShard) {
  nlohmann::json weight_map = GoodWeightMap();
  weight_map["lm_head"] = "model-00002-of-00002.safetensors";
  WriteIndex(weight_map);
  EXPECT_TRUE(HasError(WeightStore::Open(dir()).status(), kNotFound,
                       {"model.safetensors.index.json", "'lm_head'", "model-00002-of-00002"}));
}

TEST_F(ShardedCheckpointTest, RejectsShardEscapingDirectory) {
  for (const char* escaping : {"../model-00002-of-00002.safetensors",
                               "sub/../../model-00002-of-00002.safetensors", "/etc/passwd", ""}) {
    SCOPED_TRACE(escaping);
    nlohmann::json weight_map = GoodWeightMap();
    weight_map["head"] = escaping;
    WriteIndex(weight_map);
    EXPECT_TRUE(HasError(WeightStore::Open(dir()).status(), kInvalid,
                         {"model.safetensors.index.json", "'head'", "escapes"}));
  }
}

TEST_F(ShardedCheckpointTest, RejectsTensorListedTwiceInIndex) {
  WriteTextFile(index_path(), R"({"weight_map": {"embed": "model-00001-of-00002.safetensors",
      "norm": "model-00001-of-00002.safetensors", "head": "model-00002-of-00002.safetensors",
      "embed": "model-00002-of-00002.safetensors"}})");
  EXPECT_TRUE(HasError(WeightStore::Open(dir()).status(), kInvalid,
                       {"model.safetensors.index.json", "duplicate", "'embed'"}));
}

TEST_F(ShardedCheckpointTest, RejectsTensorPresentInTwoShards) {
  ASSERT_TRUE(WriteSafetensors(dir() / "model-00002-of-00002.safetensors",
                               {FromFloat32("head", head_), FromFloat32("norm", norm_)})
                  .ok());
  WriteIndex(GoodWeightMap());
  EXPECT_TRUE(HasError(WeightStore::Open(dir()).status(), kInvalid,
                       {"model.safetensors.index.json", "'norm'", "model-00002-of-00002"}));
}

TEST_F(ShardedCheckpointTest, RejectsShardTensorMissingFromIndex) {
  nlohmann::json weight_map = GoodWeightMap();
  weight_map.erase("norm");
  WriteIndex(weight_map);
  EXPECT_TRUE(HasError(WeightStore::Open(dir()).status(), kInvalid,
                       {"model.safetensors.index.json", "'norm'", "not listed"}));
}

TEST_F(ShardedCheckpointTest, RejectsCorruptShard) {
  WriteTextFile(dir() / "model-00002-of-00002.safetensors", "garbage!garbage!");
  WriteIndex(GoodWeightMap());
  EXPECT_TRUE(HasError(WeightStore::Open(dir()).status(), kInvalid,
                       {"model.safetensors.index.json", "model-00002-of-00002.safetensors"}));
}

TEST_F(ShardedCheckpointTest, LoadF32ChecksShapeAndPresence) {
  WriteIndex(GoodWeightMap());
  auto store = WeightStore::Open(dir());
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE(HasError((*store)->LoadF32("embed", {4, 6}).status(), kInvalid,
                       {"model-00001-of-00002.safetensors", "'embed'", "[6, 4]", "[4, 6]"}));
  EXPECT_TRUE(
      HasError((*store)->LoadF32("absent", {1}).status(), kNotFound, {dir().string(), "'absent'"}));
}

}  // namespace
}  // namespace flatfleet
