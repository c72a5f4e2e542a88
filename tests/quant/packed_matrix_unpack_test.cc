// PackedMatrix::Unpack (the quantizer's row-major float weight, unpacked panel by panel on the
// thread pool) returns the packed weight bit for bit at every shape, partial panels included;
// the packing zero-fills the padding lanes itself.
#include <utility>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/gemm.h"
#include "tests/quant/test_random.h"

namespace flatfleet::kernels::cpu {
namespace {

class PackedMatrixUnpackTest : public quant::test_util::RandomTest {};

TEST_F(PackedMatrixUnpackTest, UnpackReturnsThePackedWeightBitForBit) {
  for (int64_t n : {int64_t{1}, int64_t{15}, int64_t{16}, int64_t{17}, UniformInt(33, 700)}) {
    for (int64_t k : {int64_t{1}, UniformInt(2, 300)}) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " k=" << k);
      const std::vector<float> w = Gaussian(n * k);
      const PackedMatrix packed(w.data(), n, k, nullptr);
      std::vector<float> out(n * k, -1.0f);
      packed.Unpack(out);
      ASSERT_EQ(out, w);  // float ==: exact copies (no NaN in a Gaussian draw)
      // The last panel's lanes past n are zeros (the buffer starts uninitialised).
      const float* last = packed.panel(packed.num_panels() - 1);
      for (int64_t lane = n % PackedMatrix::kPanelWidth;
           lane > 0 && lane < PackedMatrix::kPanelWidth; ++lane) {
        for (int64_t i = 0; i < k; ++i) ASSERT_EQ(last[i * PackedMatrix::kPanelWidth + lane], 0.0f);
      }
    }
  }
}

// Packing a bf16 / f16 / f32 view (strided rows: a column slice) gives the panels of widening it
// first (WidenToFloat) and packing the float32 copy, bit for bit.
TEST_F(PackedMatrixUnpackTest, ViewPackingEqualsWidenThenPack) {
  const int64_t n = UniformInt(17, 200), k = UniformInt(1, 100), stride = k + UniformInt(0, 9);
  const std::vector<float> values = Gaussian(n * stride);
  std::vector<uint16_t> bf16(values.size()), f16(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    bf16[i] = FloatToBF16(values[i]);
    f16[i] = FloatToHalf(values[i]);
  }
  for (auto [data, type] :
       {std::pair<const void*, runtime::ScalarType>{bf16.data(), runtime::ScalarType::kBFloat16},
        {f16.data(), runtime::ScalarType::kFloat16},
        {values.data(), runtime::ScalarType::kFloat32}}) {
    SCOPED_TRACE(::testing::Message() << "type " << runtime::ScalarName(type) << " n=" << n
                                      << " k=" << k << " stride=" << stride);
    runtime::ConstTensorView view(data, type, runtime::MemoryKind::kHost, n, k);
    view.row_stride = stride;
    ASSERT_TRUE(PackedMatrix::PackableView(view));
    auto widened = WidenToFloat(view, "test");
    ASSERT_TRUE(widened.ok()) << widened.status();
    const PackedMatrix expected(widened->data(), n, k, nullptr);
    const PackedMatrix packed(view, nullptr);
    for (int64_t p = 0; p < packed.num_panels(); ++p) {
      const std::vector<float> a(packed.panel(p), packed.panel(p) + k * PackedMatrix::kPanelWidth);
      const std::vector<float> b(expected.panel(p),
                                 expected.panel(p) + k * PackedMatrix::kPanelWidth);
      ASSERT_EQ(a, b) << "panel " << p;
    }
  }
  runtime::ConstTensorView device(values.data(), runtime::ScalarType::kFloat32,
                                  runtime::MemoryKind::kDevice, n, k);
  EXPECT_FALSE(PackedMatrix::PackableView(device));
}

}  // namespace
}  // namespace flatfleet::kernels::cpu
