// GPTQ's memory: QuantizeGptqInPlace factors the caller's Hessian itself (no [k, k] buffer of its
// own, either solver, act_order included) with the codes of the copying QuantizeGptq, and the
// backend's last quantization of a layer (ReleaseFloat) hands GPTQ the calibration's Gram.
//
// Measured with a counting global operator new/delete (this binary only): the peak of the bytes
// allocated through it above the level at the start of a call. OpenBLAS's own buffers are not
// counted (they are not ours to cut). The copying path is measured too, so a test that stopped
// seeing the [k, k] buffer would fail there.
#include <malloc.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

#include "gtest/gtest.h"
#include "quant/blas_library.h"
#include "quant/gptq_quantizer.h"
#include "quant/gptq_solver.h"
#include "quant/gram_accumulation.h"
#include "quant/quantized_backend.h"
#include "quant/recipes.h"
#include "tests/quant/test_random.h"

namespace {

std::atomic<int64_t> live_bytes{0};
std::atomic<int64_t> peak_bytes{0};

void* Counted(void* p) {
  if (p == nullptr) throw std::bad_alloc();
  const int64_t now = live_bytes += static_cast<int64_t>(malloc_usable_size(p));
  int64_t peak = peak_bytes.load();
  while (now > peak && !peak_bytes.compare_exchange_weak(peak, now)) {
  }
  return p;
}

void Uncounted(void* p) {
  if (p == nullptr) return;
  live_bytes -= static_cast<int64_t>(malloc_usable_size(p));
  std::free(p);
}

void* Aligned(std::size_t size, std::align_val_t alignment) {
  const std::size_t a = static_cast<std::size_t>(alignment);
  return Counted(std::aligned_alloc(a, (size + a - 1) / a * a));
}

}  // namespace

void* operator new(std::size_t size) { return Counted(std::malloc(size == 0 ? 1 : size)); }
void* operator new[](std::size_t size) { return Counted(std::malloc(size == 0 ? 1 : size)); }
void* operator new(std::size_t size, std::align_val_t a) { return Aligned(size, a); }
void* operator new[](std::size_t size, std::align_val_t a) { return Aligned(size, a); }
void operator delete(void* p) noexcept { Uncounted(p); }
void operator delete[](void* p) noexcept { Uncounted(p); }
void operator delete(void* p, std::size_t) noexcept { Uncounted(p); }
void operator delete[](void* p, std::size_t) noexcept { Uncounted(p); }
void operator delete(void* p, std::align_val_t) noexcept { Uncounted(p); }
void operator delete[](void* p, std::align_val_t) noexcept { Uncounted(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { Uncounted(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { Uncounted(p); }

namespace flatfleet::quant {
namespace {

// Bytes allocated at the peak of `run` above the level when it started.
template <typename Run>
int64_t PeakAbove(Run&& run) {
  const int64_t start = live_bytes.load();
  peak_bytes = start;
  run();
  return peak_bytes.load() - start;
}

class GptqMemoryTest : public test_util::RandomTest {
 protected:
  // A correlated Gram with one dead input, [cols, cols].
  std::vector<double> Gram(int64_t cols) {
    const int64_t samples = 2 * cols;
    std::vector<float> x = Gaussian(samples * cols);
    const std::vector<float> shared = Gaussian(samples);
    for (int64_t s = 0; s < samples; ++s) {
      for (int64_t i = 0; i < cols; ++i) x[s * cols + i] += 0.8f * shared[s];
      x[s * cols + 3] *= 5.0f;
      x[s * cols + cols - 2] = 0.0f;
    }
    std::vector<double> h(cols * cols, 0.0);
    AccumulateGram(x, samples, cols, h);
    return h;
  }
};

std::vector<const GptqSolver*> Solvers() {
  std::vector<const GptqSolver*> solvers = {&ScalarGptqSolver()};
  if (BlasGptqSolver() != nullptr) solvers.push_back(BlasGptqSolver());
  return solvers;
}

void ExpectSameMatrix(const QuantizedMatrix& a, const QuantizedMatrix& b) {
  EXPECT_EQ(a.codes, b.codes);
  EXPECT_EQ(a.scales, b.scales);
  EXPECT_EQ(a.zero_points, b.zero_points);
}

TEST_F(GptqMemoryTest, InPlaceGivesTheCopyingCodesWithoutAHessianBuffer) {
  // 8 k^2 = 1.2 MB against 9 rows k bytes = 0.17 MB of working weight and codes.
  const int64_t rows = 48, cols = 384;
  const int64_t hessian_bytes = 8 * cols * cols;
  for (const GptqSolver* solver : Solvers()) {
    for (bool act_order : {false, true}) {
      for (const QuantFormat& format :
           {QuantFormat{.bits = 4, .symmetric = true, .group_size = 128},
            QuantFormat{.bits = 3, .symmetric = false, .group_size = 0}}) {
        SCOPED_TRACE(testing::Message()
                     << solver->name() << " act_order " << act_order << " bits " << format.bits);
        const std::vector<double> h = Gram(cols);
        const std::vector<float> w = Gaussian(rows * cols);
        GptqOptions options;
        options.solver = solver;
        options.act_order = act_order;
        options.block_size = 32;
        absl::StatusOr<QuantizedMatrix> copied, in_place;
        const int64_t copying_peak =
            PeakAbove([&] { copied = QuantizeGptq(w, rows, cols, h, format, options); });
        std::vector<double> scratch = h;
        const int64_t in_place_peak = PeakAbove(
            [&] { in_place = QuantizeGptqInPlace(w, rows, cols, scratch, format, options); });
        ASSERT_TRUE(copied.ok()) << copied.status();
        ASSERT_TRUE(in_place.ok()) << in_place.status();
        ExpectSameMatrix(*in_place, *copied);
        // The copying path holds its [k, k] copy (the instrument sees it) ...
        EXPECT_GE(copying_peak, hessian_bytes);
        // ... the in-place one no [k, k] buffer at all (codes, working rows, O(k) vectors).
        EXPECT_LT(in_place_peak, hessian_bytes / 4) << "copying path: " << copying_peak;
      }
    }
  }
}

TEST_F(GptqMemoryTest, RowChunksGiveTheSameCodes) {
  // Rows are independent once U is known: chunks of 5 rows (the last one short) against one.
  const int64_t rows = 23, cols = 256;
  const std::vector<double> h = Gram(cols);
  const std::vector<float> w = Gaussian(rows * cols);
  for (bool act_order : {false, true}) {
    SCOPED_TRACE(testing::Message() << "act_order " << act_order);
    GptqOptions options;
    options.solver = &ScalarGptqSolver();
    options.act_order = act_order;
    options.clip_search = true;
    const QuantFormat format{.bits = 4, .symmetric = false, .group_size = 64};
    auto whole = QuantizeGptq(w, rows, cols, h, format, options);
    options.working_rows = 5;
    int64_t chunked_peak = 0;
    absl::StatusOr<QuantizedMatrix> chunked;
    chunked_peak = PeakAbove([&] { chunked = QuantizeGptq(w, rows, cols, h, format, options); });
    ASSERT_TRUE(whole.ok()) << whole.status();
    ASSERT_TRUE(chunked.ok()) << chunked.status();
    ExpectSameMatrix(*chunked, *whole);
    // The copy of H plus at most 5 working rows of doubles (and the codes, O(k) vectors).
    EXPECT_LT(chunked_peak, 8 * cols * cols + 8 * 5 * cols + rows * cols + 64 * cols);
  }
}

// The backend's last quantization of a GPTQ layer factors the calibration's Gram in place; an
// earlier one (Quantized(), the layer may be calibrated further) copies it. Same layer either way.
TEST_F(GptqMemoryTest, ReleaseFloatHandsTheGramToGptq) {
  auto recipe = RecipeByName("w4a8-gptq");
  ASSERT_TRUE(recipe.ok()) << recipe.status();
  const int64_t n = 32, k = 512, rows = 64;
  const int64_t gram_bytes = 8 * k * k;
  const Tensor weight({n, k}, Gaussian(n * k, 0.05f));
  const Tensor calibration_in({rows, k}, Gaussian(rows * k));
  auto backend = QuantizedCpuBackend::Create(*recipe, {});
  ASSERT_TRUE(backend.ok()) << backend.status();
  (*backend)->set_quantize_at_prepare(false);
  auto copied = (*backend)->PrepareQuantizedLinear(weight, nullptr);
  auto consumed = (*backend)->PrepareQuantizedLinear(weight, nullptr);
  ASSERT_TRUE(copied.ok() && consumed.ok());
  (*backend)->set_mode(LinearMode::kCalibrate);
  Tensor out({rows, n});
  ASSERT_TRUE((*backend)->TryLinear(**copied, calibration_in, out).ok());
  ASSERT_TRUE((*backend)->TryLinear(**consumed, calibration_in, out).ok());

  absl::StatusOr<const QuantizedLinear*> reference;
  const int64_t copying_peak = PeakAbove([&] { reference = (*copied)->Quantized(*recipe); });
  ASSERT_TRUE(reference.ok()) << reference.status();
  absl::Status released;
  const int64_t release_peak = PeakAbove([&] { released = (*consumed)->ReleaseFloat(*recipe); });
  ASSERT_TRUE(released.ok()) << released;
  auto result = (*consumed)->Quantized(*recipe);
  ASSERT_TRUE(result.ok()) << result.status();
  ExpectSameMatrix((*result)->weight(), (*reference)->weight());
  EXPECT_TRUE((*consumed)->calibration().raw_gram.empty());

  EXPECT_GE(copying_peak, gram_bytes);
  // The layer's weight (unpacked from the float handle, which is freed first), its folded copy
  // and codes, GPTQ's working rows: about 9 n k + 8 n k bytes, far below one Gram.
  EXPECT_LT(release_peak, gram_bytes / 4) << "copying quantization: " << copying_peak;
}

}  // namespace
}  // namespace flatfleet::quant
