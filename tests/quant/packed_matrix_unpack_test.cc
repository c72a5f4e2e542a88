// PackedMatrix::Unpack (the quantizer's row-major float weight, unpacked panel by panel on the
// thread pool) returns the packed weight bit for bit at every shape, partial panels included;
// the packing zero-fills the padding lanes itself.
#include <vector>

#include "gtest/gtest.h"
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

}  // namespace
}  // namespace flatfleet::kernels::cpu
