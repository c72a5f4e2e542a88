#include "quant/in_order_matmul.h"

#include <vector>

#include "common/thread_pool.h"
#include "gtest/gtest.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

class InOrderMatMulTest : public test_util::RandomTest {
 protected:
  std::vector<double> RandomValues(int64_t count) {
    const std::vector<float> draws = Gaussian(count);
    return std::vector<double>(draws.begin(), draws.end());
  }
};

// The loop whose rounding the product reproduces.
std::vector<double> TripleLoop(const MatrixView& a, const MatrixView& b) {
  std::vector<double> c(a.rows * b.cols, 0.0);
  for (int64_t i = 0; i < a.rows; ++i) {
    for (int64_t k = 0; k < a.cols; ++k) {
      const double aik = a.data[i * a.row_stride + k * a.col_stride];
      for (int64_t j = 0; j < b.cols; ++j) {
        c[i * b.cols + j] += aik * b.data[k * b.row_stride + j * b.col_stride];
      }
    }
  }
  return c;
}

TEST_F(InOrderMatMulTest, EveryElementIsTheTripleLoopsBitForBitAtAnyThreadCount) {
  ThreadPool one(1), three(3), eight(8);
  for (int trial = 0; trial < 12; ++trial) {
    // Sizes off the 4 x 8 tile and the 256-deep block, row-major and transposed operands.
    const int64_t rows = UniformInt(1, 70), cols = UniformInt(1, 90), depth = UniformInt(1, 600);
    const bool transpose_a = UniformInt(0, 1) == 1, transpose_b = UniformInt(0, 1) == 1;
    const std::vector<double> a_values = RandomValues(rows * depth);
    const std::vector<double> b_values = RandomValues(depth * cols);
    const MatrixView a = transpose_a
                             ? MatrixView::RowMajor(a_values.data(), depth, rows).Transposed()
                             : MatrixView::RowMajor(a_values.data(), rows, depth);
    const MatrixView b = transpose_b
                             ? MatrixView::RowMajor(b_values.data(), cols, depth).Transposed()
                             : MatrixView::RowMajor(b_values.data(), depth, cols);
    SCOPED_TRACE(testing::Message() << "trial " << trial << ": " << rows << " x " << depth << " x "
                                    << cols << ", transposed " << transpose_a << transpose_b);
    const std::vector<double> expected = TripleLoop(a, b);
    for (ThreadPool* pool : {&one, &three, &eight}) {
      // A wider output row (ldc > cols) must leave the padding untouched.
      const int64_t ldc = cols + 3;
      std::vector<double> c(rows * ldc, -7.0);
      InOrderMatMul(*pool, a, b, c.data(), ldc);
      for (int64_t i = 0; i < rows; ++i) {
        for (int64_t j = 0; j < ldc; ++j) {
          const double want = j < cols ? expected[i * cols + j] : -7.0;
          ASSERT_EQ(c[i * ldc + j], want)
              << pool->num_threads() << " threads, (" << i << ", " << j << ")";
        }
      }
    }
    std::vector<double> serial(rows * cols);
    InOrderMatMulOnThisThread(a, b, serial.data(), cols);
    EXPECT_EQ(serial, expected);
  }
}

}  // namespace
}  // namespace flatfleet::quant
