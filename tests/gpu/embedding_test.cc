// The CUDA embedding gather: rows equal the widened table rows bit for bit (widening bfloat16 is
// exact), and ids outside the table give zero rows.
#include "kernels/cuda/embedding.h"

#include <cstdint>
#include <tuple>
#include <vector>

#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/int8_quant_test_util.h"
#include "tests/gpu/ops_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::BitwiseEqual;
using testing::DeviceBuffer;

struct Shape {
  int64_t rows;
  int64_t table_rows;
  int64_t hidden;
};

class EmbeddingGpuTest : public ::testing::TestWithParam<std::tuple<Shape, bool>> {
 protected:
  testing::SeededRng random_;
};

// Random ids, a quarter of them outside [0, table_rows) (negative or past the end).
std::vector<int32_t> RandomIds(testing::SeededRng& random, int64_t rows, int64_t table_rows) {
  std::vector<int32_t> ids(rows);
  for (auto& id : ids) {
    switch (random.UniformInt(0, 7)) {
      case 0:
        id = static_cast<int32_t>(random.UniformInt(-1000, -1));
        break;
      case 1:
        id = static_cast<int32_t>(table_rows + random.UniformInt(0, 1000));
        break;
      default:
        id = static_cast<int32_t>(random.UniformInt(0, table_rows - 1));
    }
  }
  ids[0] = static_cast<int32_t>(table_rows - 1);  // the last row is reachable
  return ids;
}

TEST_P(EmbeddingGpuTest, MatchesWidenedTableExactly) {
  FF_SKIP_WITHOUT_GPU();
  const auto [shape, bf16_table] = GetParam();
  const auto [rows, table_rows, hidden] = shape;
  const std::vector<float> values = random_.Gaussian(table_rows * hidden);
  const std::vector<uint16_t> table_bf16 = testing::ToBf16(values);
  const std::vector<float> table = bf16_table ? testing::Widen(table_bf16) : values;
  const std::vector<int32_t> ids = RandomIds(random_, rows, table_rows);

  std::vector<float> expected(rows * hidden, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    if (ids[r] < 0 || ids[r] >= table_rows) continue;
    for (int64_t i = 0; i < hidden; ++i) expected[r * hidden + i] = table[ids[r] * hidden + i];
  }

  DeviceBuffer<uint16_t> d_table_bf16(table_bf16);
  DeviceBuffer<float> d_table_f32(values);
  DeviceBuffer<int32_t> d_ids(ids);
  DeviceBuffer<float> d_out(testing::Poisoned<float>(rows * hidden));
  const DeviceEmbeddingLookup args{
      .table = bf16_table ? static_cast<const void*>(d_table_bf16.get()) : d_table_f32.get(),
      .table_dtype = bf16_table ? EmbeddingTableType::kBfloat16 : EmbeddingTableType::kFloat32,
      .table_rows = table_rows,
      .hidden = hidden,
      .ids = d_ids.get(),
      .rows = rows,
      .out = d_out.get()};
  ASSERT_TRUE(EmbeddingLookup(args, nullptr).ok());
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  EXPECT_TRUE(BitwiseEqual(expected, d_out.ToHost()));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, EmbeddingGpuTest,
    ::testing::Combine(::testing::Values(Shape{5, 32, 64},       // tiny fixture
                                         Shape{9, 300, 256},     // tiny fixture
                                         Shape{33, 2048, 4096},  // Llama-3-8B / Mixtral hidden
                                         Shape{7, 512, 8192},    // Llama-3-70B hidden
                                         Shape{6, 50, 100},      // not a multiple of 8
                                         Shape{4, 40, 1001}),    // odd: scalar kernel
                       ::testing::Bool()));

TEST(EmbeddingGpuTest, UnalignedOutputUsesScalarPathAndMatches) {
  FF_SKIP_WITHOUT_GPU();
  testing::SeededRng random;
  const int64_t rows = 5, table_rows = 20, hidden = 256;
  const std::vector<uint16_t> table = testing::ToBf16(random.Gaussian(table_rows * hidden));
  const std::vector<int32_t> ids = {3, -1, 19, 20, 0};
  DeviceBuffer<uint16_t> d_table(table);
  DeviceBuffer<int32_t> d_ids(ids);
  DeviceBuffer<float> d_out(testing::Poisoned<float>(rows * hidden + 1));
  const DeviceEmbeddingLookup args{.table = d_table.get(),
                                   .table_rows = table_rows,
                                   .hidden = hidden,
                                   .ids = d_ids.get(),
                                   .rows = rows,
                                   .out = d_out.get() + 1};
  ASSERT_TRUE(EmbeddingLookup(args, nullptr).ok());
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  const std::vector<float> out = d_out.ToHost();
  EXPECT_TRUE(std::isnan(out[0])) << "wrote before the output";
  for (int64_t r = 0; r < rows; ++r) {
    const bool in_range = ids[r] >= 0 && ids[r] < table_rows;
    for (int64_t i = 0; i < hidden; ++i) {
      const float expected = in_range ? testing::Bf16ToFloat(table[ids[r] * hidden + i]) : 0.0f;
      ASSERT_EQ(testing::FloatBits(out[1 + r * hidden + i]), testing::FloatBits(expected))
          << "row " << r << " column " << i;
    }
  }
}

TEST(EmbeddingGpuTest, RejectsBadArguments) {
  // Argument checks run before any device call: no GPU needed.
  float out = 0.0f;
  int32_t id = 0;
  uint16_t table = 0;
  DeviceEmbeddingLookup args{
      .table = &table, .table_rows = 1, .hidden = 1, .ids = &id, .rows = 1, .out = &out};
  auto bad = args;
  bad.hidden = 0;
  EXPECT_EQ(EmbeddingLookup(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = args;
  bad.table = nullptr;
  EXPECT_EQ(EmbeddingLookup(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = args;
  bad.ids = nullptr;
  EXPECT_EQ(EmbeddingLookup(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = args;
  bad.out = nullptr;
  EXPECT_EQ(EmbeddingLookup(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = args;
  bad.rows = 0;
  bad.out = nullptr;
  EXPECT_TRUE(EmbeddingLookup(bad, nullptr).ok()) << "rows = 0 is a no-op";
}

}  // namespace
}  // namespace flatfleet::cuda
