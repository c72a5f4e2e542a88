// WriteSafetensors + FromFloat32 round trips through the reader for every dtype.
#include <cmath>
#include <string>

#include "common/safetensors.h"
#include "gtest/gtest.h"
#include "tests/common/checkpoint_test_util.h"

namespace flatfleet {
namespace {

using ::flatfleet::testing::HasError;
using ::flatfleet::testing::SeededRandom;
using ::flatfleet::testing::TemporaryDirectory;

// What the reader must give back for `value` stored as `dtype` (values are chosen exactly
// representable for the integer types).
float StoredValue(DType dtype, float value) {
  switch (dtype) {
    case DType::kF16:
      return HalfToFloat(FloatToHalf(value));
    case DType::kBF16:
      return BF16ToFloat(FloatToBF16(value));
    case DType::kBool:
      return value != 0.0f ? 1.0f : 0.0f;
    default:
      return value;
  }
}

std::vector<float> RandomValuesFor(DType dtype, size_t count, SeededRandom& random) {
  switch (dtype) {
    case DType::kI64:
      return random.Integers(count, -(int64_t{1} << 24), int64_t{1} << 24);
    case DType::kI32:
      return random.Integers(count, -(int64_t{1} << 24), int64_t{1} << 24);
    case DType::kI16:
      return random.Integers(count, -32768, 32767);
    case DType::kI8:
      return random.Integers(count, -128, 127);
    case DType::kU8:
      return random.Integers(count, 0, 255);
    case DType::kBool:
      return random.Integers(count, 0, 1);
    default:
      return random.Normal(count, 3.0f);
  }
}

constexpr DType kAllDTypes[] = {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kI64,
                                DType::kI32, DType::kI16, DType::kI8,  DType::kU8,   DType::kBool};

TEST(SafetensorsWriterTest, RoundTripsEveryDtype) {
  SeededRandom random;
  SCOPED_TRACE(::testing::Message() << "seed " << random.seed());
  TemporaryDirectory directory;
  const auto path = directory.path() / "all.safetensors";
  std::vector<Tensor> originals;
  std::vector<TensorToWrite> to_write;
  for (DType dtype : kAllDTypes) {
    std::vector<int64_t> shape = {5, 3, 2};  // odd sizes leave later tensors unaligned
    Tensor tensor(shape, RandomValuesFor(dtype, 30, random));
    to_write.push_back(
        FromFloat32(std::string("t_") + std::string(DTypeName(dtype)), tensor, dtype));
    EXPECT_EQ(to_write.back().bytes.size(), 30 * DTypeSize(dtype));
    originals.push_back(std::move(tensor));
  }
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"made_by", "test"}};
  ASSERT_TRUE(WriteSafetensors(path, to_write, metadata).ok());

  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata(), metadata);
  ASSERT_EQ((*file)->tensors().size(), std::size(kAllDTypes));
  for (size_t t = 0; t < std::size(kAllDTypes); ++t) {
    const DType dtype = kAllDTypes[t];
    SCOPED_TRACE(std::string(DTypeName(dtype)));
    const TensorInfo* info = (*file)->Find(to_write[t].name);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->dtype, dtype);
    EXPECT_EQ(info->shape, originals[t].shape());
    auto loaded = ToFloat32(*info);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    for (int64_t i = 0; i < originals[t].size(); ++i) {
      ASSERT_EQ(loaded->vector()[i], StoredValue(dtype, originals[t].vector()[i]))
          << "element " << i;
    }
    auto rows = ToFloat32Rows(*info, 2, 4);
    ASSERT_TRUE(rows.ok()) << rows.status();
    EXPECT_EQ(rows->shape(), (std::vector<int64_t>{2, 3, 2}));
    for (int64_t i = 0; i < rows->size(); ++i) {
      ASSERT_EQ(rows->vector()[i], loaded->vector()[12 + i]);
    }
  }
}

TEST(SafetensorsWriterTest, DataRegionStartsAligned) {
  TemporaryDirectory directory;
  const auto path = directory.path() / "aligned.safetensors";
  SeededRandom random;
  Tensor tensor({7}, random.Normal(7));
  ASSERT_TRUE(WriteSafetensors(path, {FromFloat32("x", tensor)}).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const auto& data = (*file)->Find("x")->data;
  EXPECT_EQ(reinterpret_cast<uintptr_t>(data.data()) % 8, 0u);
}

TEST(SafetensorsWriterTest, FromFloat32RoundsAndSaturatesIntegers) {
  Tensor tensor({5}, {300.0f, -5.0f, 2.5f, 3.5f, std::nanf("")});
  TensorToWrite u8 = FromFloat32("u8", tensor, DType::kU8);
  ASSERT_EQ(u8.bytes.size(), 5u);
  EXPECT_EQ(static_cast<uint8_t>(u8.bytes[0]), 255);
  EXPECT_EQ(static_cast<uint8_t>(u8.bytes[1]), 0);
  EXPECT_EQ(static_cast<uint8_t>(u8.bytes[2]), 2);  // ties to even
  EXPECT_EQ(static_cast<uint8_t>(u8.bytes[3]), 4);
  EXPECT_EQ(static_cast<uint8_t>(u8.bytes[4]), 0);
  TensorToWrite i8 = FromFloat32("i8", tensor, DType::kI8);
  EXPECT_EQ(static_cast<int8_t>(i8.bytes[0]), 127);
  EXPECT_EQ(static_cast<int8_t>(i8.bytes[1]), -5);
}

TEST(SafetensorsWriterTest, RejectsInconsistentTensors) {
  TemporaryDirectory directory;
  const auto path = directory.path() / "bad.safetensors";
  TensorToWrite short_bytes{"w", DType::kF32, {2, 2}, std::vector<std::byte>(12)};
  EXPECT_TRUE(HasError(WriteSafetensors(path, {short_bytes}), absl::StatusCode::kInvalidArgument,
                       {"bad.safetensors", "'w'"}));
  TensorToWrite ok{"w", DType::kU8, {2}, std::vector<std::byte>(2)};
  EXPECT_TRUE(HasError(WriteSafetensors(path, {ok, ok}), absl::StatusCode::kInvalidArgument,
                       {"bad.safetensors", "'w'"}));
  TensorToWrite reserved{"__metadata__", DType::kU8, {2}, std::vector<std::byte>(2)};
  EXPECT_TRUE(HasError(WriteSafetensors(path, {reserved}), absl::StatusCode::kInvalidArgument,
                       {"bad.safetensors", "__metadata__"}));
  EXPECT_FALSE(std::filesystem::exists(path));
  // Nothing left behind: no temporary files either.
  EXPECT_TRUE(std::filesystem::is_empty(directory.path()));
}

TEST(SafetensorsWriterTest, ReplacesExistingFile) {
  TemporaryDirectory directory;
  const auto path = directory.path() / "replace.safetensors";
  SeededRandom random;
  ASSERT_TRUE(WriteSafetensors(path, {FromFloat32("old", Tensor({3}, random.Normal(3)))}).ok());
  ASSERT_TRUE(WriteSafetensors(path, {FromFloat32("new", Tensor({4}, random.Normal(4)))}).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->Find("old"), nullptr);
  EXPECT_NE((*file)->Find("new"), nullptr);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(directory.path()),
                          std::filesystem::directory_iterator()),
            1);
}

}  // namespace
}  // namespace flatfleet
