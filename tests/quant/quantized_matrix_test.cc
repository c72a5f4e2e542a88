#include "kernels/cpu/quant/quantized_matrix.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "gtest/gtest.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

class QuantizedMatrixValidateTest : public test_util::RandomTest {
 protected:
  // A valid [rows, cols] matrix of random codes in the format's range, group size 16.
  QuantizedMatrix Random(int bits, bool symmetric, int64_t rows, int64_t cols) {
    QuantizedMatrix m;
    m.rows = rows;
    m.cols = cols;
    m.format.bits = bits;
    m.format.symmetric = symmetric;
    m.format.group_size = 16;
    for (int64_t i = 0; i < rows * cols; ++i) {
      m.codes.push_back(static_cast<int8_t>(UniformInt(MinCode(m.format), MaxCode(m.format))));
    }
    m.scales.assign(rows * m.GroupsPerRow(), FloatToHalf(0.5f));
    if (!symmetric) m.zero_points.assign(rows * m.GroupsPerRow(), 0);
    return m;
  }
};

// The vectorised range scan accepts every in-range matrix and reports the first bad code (its
// value) wherever it sits, including the range's ends and the first and last element.
TEST_F(QuantizedMatrixValidateTest, RejectsExactlyTheOutOfRangeCodes) {
  for (int bits : {2, 4, 8}) {
    for (bool symmetric : {true, false}) {
      SCOPED_TRACE(::testing::Message() << bits << " bits, symmetric=" << symmetric);
      QuantizedMatrix m = Random(bits, symmetric, 5, 64);
      m.codes.front() = static_cast<int8_t>(MinCode(m.format));
      m.codes.back() = static_cast<int8_t>(MaxCode(m.format));
      ASSERT_TRUE(m.Validate().ok()) << m.Validate();
      if (bits == 8 && !symmetric) continue;  // the full int8 range: nothing is outside it
      for (int64_t at : {int64_t{0}, UniformInt(1, 318), int64_t{319}}) {
        QuantizedMatrix bad = m;
        const int32_t outside = bits == 8 ? -128 : MaxCode(m.format) + 1;
        bad.codes[at] = static_cast<int8_t>(outside);
        bad.codes[(at + 7) % 320] = static_cast<int8_t>(outside);  // a second one
        const absl::Status status = bad.Validate();
        ASSERT_EQ(status.code(), absl::StatusCode::kOutOfRange) << status;
        EXPECT_NE(status.message().find(absl::StrCat("code ", outside, " ")), std::string::npos)
            << status;
      }
    }
  }
}

}  // namespace
}  // namespace flatfleet::quant
