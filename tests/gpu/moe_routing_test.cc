// TopKSoftmaxRouting on the GPU (kernels/cuda/moe_routing.h) against cpu::TopKSoftmaxRouting.
//
// The kernel repeats the host's float32 operations in the host's order; only expf may differ
// (CUDA's expf is within 2 ulp, glibc's within 1), so a weight can move by a few 1e-7 relative:
// allowed 1e-6 relative. Expert ids must be identical, except in rows where two logits were
// planted one ulp apart (there the exponentials may round to a tie on one side only). Exact
// logit ties give exactly equal probabilities on both sides and must pick the lower index.
#include "kernels/cuda/moe_routing.h"

#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "kernels/cpu/moe_routing.h"
#include "tests/gpu/bf16_test_util.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/quant/test_random.h"

namespace flatfleet::cuda {
namespace {

using testing::DeviceBuffer;
using testing::Poison;

constexpr double kWeightTolerance = 1e-6;  // relative

struct RoutingCase {
  int64_t rows, num_experts, top_k;
};

class MoeRoutingGpuTest : public quant::test_util::RandomTest,
                          public ::testing::WithParamInterface<RoutingCase> {
 protected:
  // Runs the kernel on `logits` and compares with the host; rows in `near_tie_rows` may choose
  // differently among near-tied experts.
  void CheckAgainstHost(const std::vector<float>& logits, int64_t rows, int64_t num_experts,
                        int64_t top_k, const std::set<int64_t>& near_tie_rows) {
    const kernels::cpu::Routing expected =
        kernels::cpu::TopKSoftmaxRouting(logits.data(), rows, num_experts, top_k);
    DeviceBuffer<float> d_logits(logits);
    DeviceBuffer<int32_t> d_ids(rows * top_k);
    DeviceBuffer<float> d_weights(rows * top_k);
    Poison(d_ids, rows * top_k);
    Poison(d_weights, rows * top_k);
    const absl::Status status = TopKSoftmaxRouting({.router_logits = d_logits.get(),
                                                    .rows = rows,
                                                    .num_experts = num_experts,
                                                    .top_k = top_k,
                                                    .expert_ids = d_ids.get(),
                                                    .expert_weights = d_weights.get()},
                                                   nullptr);
    ASSERT_TRUE(status.ok()) << status;
    FF_CUDA_ASSERT(cudaDeviceSynchronize());
    const std::vector<int32_t> ids = d_ids.ToHost();
    const std::vector<float> weights = d_weights.ToHost();
    int64_t id_mismatches = 0, weight_mismatches = 0;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < top_k; ++i) {
        const int64_t at = r * top_k + i;
        if (ids[at] != expected.experts[at] && !near_tie_rows.contains(r)) {
          if (++id_mismatches <= 5) {
            ADD_FAILURE() << "row " << r << " rank " << i << ": expert " << ids[at] << ", host "
                          << expected.experts[at];
          }
        }
        // Compare with the host's weight of the same expert (near-tied experts may swap ranks;
        // their probabilities differ by an ulp of the logit). An expert the host did not keep
        // (a near tie at the top-k boundary) is compared with the host's weight at its rank,
        // which is then within a logit ulp or two (up to 2e-6 relative for |logit| < 16).
        double reference = expected.weights[at];
        double tolerance = kWeightTolerance;
        if (ids[at] != expected.experts[at]) {
          tolerance = kWeightTolerance + 4e-6;
          for (int64_t j = 0; j < top_k; ++j) {
            if (expected.experts[r * top_k + j] == ids[at]) {
              reference = expected.weights[r * top_k + j];
              tolerance = kWeightTolerance;
            }
          }
        }
        const double allowed = tolerance * std::fabs(reference);
        if (!(std::fabs(weights[at] - reference) <= allowed)) {
          if (++weight_mismatches <= 5) {
            ADD_FAILURE() << "row " << r << " rank " << i << ": weight " << weights[at] << ", host "
                          << reference;
          }
        }
      }
    }
    EXPECT_EQ(id_mismatches, 0);
    EXPECT_EQ(weight_mismatches, 0);
  }
};

TEST_P(MoeRoutingGpuTest, MatchesHostRouting) {
  FF_SKIP_WITHOUT_GPU();
  const auto [rows, num_experts, top_k] = GetParam();
  std::vector<float> logits = Gaussian(rows * num_experts, 2.0f);
  std::set<int64_t> near_tie_rows;
  for (int64_t r = 0; r < rows && num_experts > 1; ++r) {
    float* row = logits.data() + r * num_experts;
    const int64_t a = UniformInt(0, num_experts - 1);
    int64_t b = UniformInt(0, num_experts - 2);
    if (b >= a) ++b;
    switch (r % 4) {
      case 1:  // an exact tie: both sides see equal probabilities, the lower index goes first
        row[b] = row[a];
        break;
      case 2:  // one ulp apart: may round to a tie on one side only
        row[b] = std::nextafter(row[a], INFINITY);
        near_tie_rows.insert(r);
        break;
      default:
        break;
    }
  }
  CheckAgainstHost(logits, rows, num_experts, top_k, near_tie_rows);
}

INSTANTIATE_TEST_SUITE_P(Shapes, MoeRoutingGpuTest,
                         ::testing::Values(RoutingCase{1, 8, 2}, RoutingCase{37, 8, 2},
                                           RoutingCase{4096, 8, 2}, RoutingCase{64, 64, 8},
                                           RoutingCase{513, 16, 4}, RoutingCase{5, 1, 1},
                                           RoutingCase{7, 33, 3}, RoutingCase{19, 64, 1},
                                           RoutingCase{9, 8, 8}, RoutingCase{3, 32, 6}),
                         [](const auto& info) {
                           return absl::StrCat("rows", info.param.rows, "_e",
                                               info.param.num_experts, "_k", info.param.top_k);
                         });

// All logits equal: probabilities all 1/E, so the top k are experts 0 .. k-1 with weights 1/k.
TEST_P(MoeRoutingGpuTest, UniformLogitsPickTheLowestIndices) {
  FF_SKIP_WITHOUT_GPU();
  const auto [rows, num_experts, top_k] = GetParam();
  const std::vector<float> logits(rows * num_experts, UniformFloat(-3.0f, 3.0f));
  CheckAgainstHost(logits, rows, num_experts, top_k, {});
}

TEST(MoeRoutingArgumentsTest, RejectsBadArgumentsNamingTheField) {
  // Argument checks only (nothing reaches the device): runs without a GPU.
  float logits;
  int32_t ids;
  float weights;
  const MoeRoutingArgs good{.router_logits = &logits,
                            .rows = 1,
                            .num_experts = 8,
                            .top_k = 2,
                            .expert_ids = &ids,
                            .expert_weights = &weights};
  const auto message = [](const MoeRoutingArgs& args) {
    return std::string(TopKSoftmaxRouting(args, nullptr).message());
  };
  MoeRoutingArgs args = good;
  args.num_experts = 65;
  EXPECT_THAT(message(args), ::testing::HasSubstr("num_experts"));
  args = good;
  args.top_k = 9;
  EXPECT_THAT(message(args), ::testing::HasSubstr("top_k"));
  args = good;
  args.top_k = 3;
  args.num_experts = 2;
  EXPECT_THAT(message(args), ::testing::HasSubstr("top_k"));
  args = good;
  args.rows = -1;
  EXPECT_THAT(message(args), ::testing::HasSubstr("rows"));
  args = good;
  args.router_logits = nullptr;
  EXPECT_THAT(message(args), ::testing::HasSubstr("router_logits is null"));
  args = good;
  args.expert_ids = nullptr;
  EXPECT_THAT(message(args), ::testing::HasSubstr("expert_ids is null"));
  args = good;
  args.expert_weights = nullptr;
  EXPECT_THAT(message(args), ::testing::HasSubstr("expert_weights is null"));
  args = good;
  args.rows = 0;
  EXPECT_TRUE(TopKSoftmaxRouting(args, nullptr).ok());
}

}  // namespace
}  // namespace flatfleet::cuda
