// SafetensorsFile: valid images parse; every malformed header is refused with an error that
// names the file and the tensor or field at fault.
#include <cmath>
#include <cstring>
#include <string>

#include "common/safetensors.h"
#include "gtest/gtest.h"
#include "tests/common/checkpoint_test_util.h"

namespace flatfleet {
namespace {

using ::flatfleet::testing::HasError;
using ::flatfleet::testing::SafetensorsImage;
using ::flatfleet::testing::TemporaryDirectory;
constexpr char kName[] = "case.safetensors";
constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

absl::Status ParseStatus(const std::vector<std::byte>& image) {
  return SafetensorsFile::Parse(image, kName).status();
}
absl::Status ParseStatus(std::string_view header, size_t data_bytes) {
  return ParseStatus(SafetensorsImage(header, data_bytes));
}

TEST(SafetensorsReaderTest, ParsesValidImageInOffsetOrder) {
  // Deliberately listed out of offset order, with an unaligned data region and metadata.
  const std::string header = R"({"b":{"dtype":"F32","shape":[2,3],"data_offsets":[2,26]},)"
                             R"("__metadata__":{"format":"pt","note":"x"},)"
                             R"("a":{"dtype":"I8","shape":[2],"data_offsets":[0,2]},)"
                             R"("empty":{"dtype":"BF16","shape":[0,5],"data_offsets":[26,26]}})";
  std::vector<std::byte> image = SafetensorsImage(header, 26);
  auto file = SafetensorsFile::Parse(image, kName);
  ASSERT_TRUE(file.ok()) << file.status();
  const auto& tensors = (*file)->tensors();
  ASSERT_EQ(tensors.size(), 3u);
  EXPECT_EQ(tensors[0].name, "a");
  EXPECT_EQ(tensors[1].name, "b");
  EXPECT_EQ(tensors[2].name, "empty");
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  EXPECT_EQ((*file)->path(), kName);
  const TensorInfo* b = (*file)->Find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, DType::kF32);
  EXPECT_EQ(b->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(b->num_elements(), 6);
  EXPECT_EQ(b->file, kName);
  EXPECT_EQ(b->data.size(), 24u);
  // The bytes are copied out of `image`: its content must be what the view shows.
  const size_t data_start = 8 + header.size();
  EXPECT_EQ(std::memcmp(b->data.data(), image.data() + data_start + 2, 24), 0);
  EXPECT_EQ((*file)->Find("missing"), nullptr);

  auto values = ToFloat32(*b);
  ASSERT_TRUE(values.ok()) << values.status();
  float expected[6];
  std::memcpy(expected, image.data() + data_start + 2, 24);
  for (int i = 0; i < 6; ++i) {
    if (std::isnan(expected[i])) {
      EXPECT_TRUE(std::isnan(values->vector()[i]));
    } else {
      EXPECT_EQ(values->vector()[i], expected[i]);
    }
  }
  auto empty = ToFloat32(*(*file)->Find("empty"));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->size(), 0);
}

TEST(SafetensorsReaderTest, EmptyHeaderObjectWithNoData) {
  EXPECT_TRUE(ParseStatus("{}", 0).ok());
  EXPECT_TRUE(ParseStatus(R"({"__metadata__":{}})", 0).ok());
}

TEST(SafetensorsReaderTest, RejectsFileShorterThanHeaderLength) {
  std::vector<std::byte> image(5);
  EXPECT_TRUE(HasError(ParseStatus(image), kInvalid, {kName, "too small"}));
}

TEST(SafetensorsReaderTest, RejectsHeaderLengthBeyondFile) {
  EXPECT_TRUE(
      HasError(ParseStatus(SafetensorsImage("{}", 0, 3)), kInvalid, {kName, "header length 3"}));
}

TEST(SafetensorsReaderTest, RejectsAbsurdHeaderLength) {
  EXPECT_TRUE(HasError(ParseStatus(SafetensorsImage("{}", 0, uint64_t{1} << 62)), kInvalid,
                       {kName, "header length"}));
}

TEST(SafetensorsReaderTest, RejectsMalformedJson) {
  EXPECT_TRUE(HasError(ParseStatus(R"({"a":{"dtype":"F32",)", 0), kInvalid, {kName, "JSON"}));
}

TEST(SafetensorsReaderTest, RejectsHeaderThatIsNotAnObject) {
  EXPECT_TRUE(HasError(ParseStatus("[1,2]", 0), kInvalid, {kName, "not a JSON object"}));
}

TEST(SafetensorsReaderTest, RejectsEntryThatIsNotAnObject) {
  EXPECT_TRUE(HasError(ParseStatus(R"({"w":[1]})", 0), kInvalid, {kName, "'w'"}));
}

TEST(SafetensorsReaderTest, RejectsMissingDtype) {
  EXPECT_TRUE(HasError(ParseStatus(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4), kInvalid,
                       {kName, "'w'", "dtype"}));
}

TEST(SafetensorsReaderTest, RejectsMissingShape) {
  EXPECT_TRUE(HasError(ParseStatus(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4), kInvalid,
                       {kName, "'w'", "shape"}));
}

TEST(SafetensorsReaderTest, RejectsMissingDataOffsets) {
  EXPECT_TRUE(HasError(ParseStatus(R"({"w":{"dtype":"F32","shape":[1]}})", 4), kInvalid,
                       {kName, "'w'", "data_offsets"}));
}

TEST(SafetensorsReaderTest, RejectsDataOffsetsOfWrongArity) {
  EXPECT_TRUE(HasError(ParseStatus(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4),
                       kInvalid, {kName, "'w'", "data_offsets"}));
}

TEST(SafetensorsReaderTest, RejectsUnknownDtype) {
  EXPECT_TRUE(HasError(ParseStatus(R"({"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", 1),
                       kInvalid, {kName, "'w'", "unknown dtype 'Q4'"}));
}

TEST(SafetensorsReaderTest, RejectsNegativeShapeDim) {
  EXPECT_TRUE(HasError(ParseStatus(R"({"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", 1),
                       kInvalid, {kName, "'w'", "negative"}));
}

TEST(SafetensorsReaderTest, RejectsNonIntegerShapeDim) {
  EXPECT_TRUE(HasError(ParseStatus(R"({"w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}})", 1),
                       kInvalid, {kName, "'w'", "shape"}));
  EXPECT_TRUE(HasError(ParseStatus(R"({"w":{"dtype":"U8","shape":["1"],"data_offsets":[0,1]}})", 1),
                       kInvalid, {kName, "'w'", "shape"}));
}

TEST(SafetensorsReaderTest, RejectsShapeElementCountOverflow) {
  EXPECT_TRUE(HasError(
      ParseStatus(R"({"w":{"dtype":"U8","shape":[4611686018427387904,4],"data_offsets":[0,0]}})",
                  0),
      kInvalid, {kName, "'w'", "overflow"}));
  // Fits int64 as elements but not as bytes.
  EXPECT_TRUE(HasError(
      ParseStatus(R"({"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}})", 0),
      kInvalid, {kName, "'w'", "overflow"}));
}

TEST(SafetensorsReaderTest, RejectsReversedOffsets) {
  EXPECT_TRUE(HasError(ParseStatus(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[2,0]}})", 2),
                       kInvalid, {kName, "'w'", "reversed"}));
}

TEST(SafetensorsReaderTest, RejectsOffsetsBeyondData) {
  EXPECT_TRUE(HasError(ParseStatus(R"({"w":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", 4),
                       kInvalid, {kName, "'w'", "beyond"}));
}

TEST(SafetensorsReaderTest, RejectsByteSizeNotMatchingShape) {
  EXPECT_TRUE(HasError(ParseStatus(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
                       kInvalid, {kName, "'w'", "needs 12"}));
}

TEST(SafetensorsReaderTest, RejectsOverlappingTensors) {
  EXPECT_TRUE(HasError(ParseStatus(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                                   R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                                   6),
                       kInvalid, {kName, "'b'", "overlaps", "'a'"}));
}

TEST(SafetensorsReaderTest, RejectsHoleBetweenTensors) {
  EXPECT_TRUE(HasError(ParseStatus(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                                   R"("b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}})",
                                   6),
                       kInvalid, {kName, "'b'", "hole"}));
}

TEST(SafetensorsReaderTest, RejectsHoleBeforeFirstTensor) {
  EXPECT_TRUE(HasError(ParseStatus(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})", 3),
                       kInvalid, {kName, "'a'", "hole"}));
}

TEST(SafetensorsReaderTest, RejectsUnusedBytesAfterLastTensor) {
  EXPECT_TRUE(HasError(ParseStatus(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", 5),
                       kInvalid, {kName, "'a'", "unused"}));
}

TEST(SafetensorsReaderTest, RejectsDuplicateTensorNames) {
  EXPECT_TRUE(HasError(ParseStatus(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                                   R"("a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                                   4),
                       kInvalid, {kName, "duplicate", "'a'"}));
}

TEST(SafetensorsReaderTest, RejectsMetadataThatIsNotAStringMap) {
  EXPECT_TRUE(HasError(ParseStatus(R"({"__metadata__":{"format":1}})", 0), kInvalid,
                       {kName, "__metadata__", "'format'"}));
  EXPECT_TRUE(
      HasError(ParseStatus(R"({"__metadata__":["pt"]})", 0), kInvalid, {kName, "__metadata__"}));
}

TEST(SafetensorsReaderTest, OpenReportsMissingAndEmptyFiles) {
  TemporaryDirectory directory;
  const auto missing = directory.path() / "absent.safetensors";
  EXPECT_TRUE(HasError(SafetensorsFile::Open(missing).status(), absl::StatusCode::kNotFound,
                       {"absent.safetensors"}));
  const auto empty = directory.path() / "empty.safetensors";
  testing::WriteTextFile(empty, "");
  EXPECT_TRUE(HasError(SafetensorsFile::Open(empty).status(), kInvalid, {"empty.safetensors"}));
  EXPECT_TRUE(HasError(SafetensorsFile::Open(directory.path()).status(), kInvalid,
                       {directory.path().string()}));
}

TEST(SafetensorsReaderTest, OpenMapsValidFile) {
  TemporaryDirectory directory;
  const auto path = directory.path() / "mapped.safetensors";
  std::vector<std::byte> image =
      SafetensorsImage(R"({"w":{"dtype":"I16","shape":[3],"data_offsets":[0,6]}})", 6);
  testing::WriteBytesFile(path, image);
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorInfo* w = (*file)->Find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->file, path.string());
  EXPECT_EQ(std::memcmp(w->data.data(), image.data() + image.size() - 6, 6), 0);
}

TEST(SafetensorsReaderTest, ToFloat32RowsChecksRange) {
  std::vector<std::byte> image =
      SafetensorsImage(R"({"w":{"dtype":"U8","shape":[4,3],"data_offsets":[0,12]}})", 12);
  auto file = SafetensorsFile::Parse(image, kName);
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorInfo& w = *(*file)->Find("w");
  auto rows = ToFloat32Rows(w, 1, 3);
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->shape(), (std::vector<int64_t>{2, 3}));
  const size_t data_start = image.size() - 12;
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(rows->vector()[i],
              static_cast<float>(static_cast<uint8_t>(image[data_start + 3 + i])));
  }
  auto none = ToFloat32Rows(w, 2, 2);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->shape(), (std::vector<int64_t>{0, 3}));
  EXPECT_TRUE(HasError(ToFloat32Rows(w, 3, 5).status(), kInvalid, {kName, "'w'"}));
  EXPECT_TRUE(HasError(ToFloat32Rows(w, -1, 1).status(), kInvalid, {kName, "'w'"}));
  EXPECT_TRUE(HasError(ToFloat32Rows(w, 2, 1).status(), kInvalid, {kName, "'w'"}));
}

}  // namespace
}  // namespace flatfleet
