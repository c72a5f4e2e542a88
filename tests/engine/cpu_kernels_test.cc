// Each CPU kernel against a straightforward float64 computation on fresh random inputs.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/moe_routing.h"
#include "kernels/cpu/pointwise.h"
#include "kernels/cpu/rotary.h"
#include "tests/engine/test_util.h"

namespace flatfleet::kernels::cpu {
namespace {

using engine::testing::RandomTensor;

// float32 accumulation over k terms: error grows like k * eps * sum |x_i w_i|.
double GemmTolerance(int64_t k, double abs_dot) { return 4.0 * k * 6e-8 * abs_dot + 1e-30; }

class GemmTest : public ::testing::TestWithParam<std::tuple<int, int, int, bool>> {};

TEST_P(GemmTest, MatchesDoubleReference) {
  const auto [m, n, k, with_bias] = GetParam();
  std::mt19937 rng(m * 1000003 + n * 1009 + k);
  Tensor x = RandomTensor({m, k}, rng);
  Tensor w = RandomTensor({n, k}, rng);
  Tensor bias = RandomTensor({n}, rng);
  PackedMatrix packed(w.data(), n, k, with_bias ? bias.data() : nullptr);
  Tensor y({m, n});
  std::fill(y.vector().begin(), y.vector().end(), 12345.0f);  // must be overwritten
  Gemm(x.data(), m, packed, y.data());
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double expected = with_bias ? bias.data()[j] : 0.0;
      double abs_dot = std::abs(expected);
      for (int p = 0; p < k; ++p) {
        expected += static_cast<double>(x.row(i)[p]) * w.row(j)[p];
        abs_dot += std::abs(static_cast<double>(x.row(i)[p]) * w.row(j)[p]);
      }
      ASSERT_NEAR(y.row(i)[j], expected, GemmTolerance(k, abs_dot))
          << "m=" << m << " n=" << n << " k=" << k << " at (" << i << ", " << j << ")";
    }
  }
}

// Shapes around the micro-kernel (6 x 16), the panel width and the 512 reduction block.
INSTANTIATE_TEST_SUITE_P(
    Shapes, GemmTest,
    ::testing::Values(std::make_tuple(1, 1, 1, false), std::make_tuple(1, 17, 33, true),
                      std::make_tuple(2, 16, 512, false), std::make_tuple(5, 31, 513, true),
                      std::make_tuple(6, 48, 100, false), std::make_tuple(7, 15, 1100, false),
                      std::make_tuple(13, 100, 256, true), std::make_tuple(25, 64, 64, false),
                      std::make_tuple(97, 130, 300, true), std::make_tuple(200, 40, 700, false)));

TEST(RmsNormTest, MatchesDoubleReference) {
  std::mt19937 rng(1);
  const int rows = 9, cols = 300;
  Tensor x = RandomTensor({rows, cols}, rng, 3.0f);
  Tensor weight = RandomTensor({cols}, rng);
  Tensor y({rows, cols});
  RmsNormRows(x.data(), rows, cols, weight.data(), 1e-5f, y.data());
  for (int r = 0; r < rows; ++r) {
    double sum = 0;
    for (int i = 0; i < cols; ++i) sum += static_cast<double>(x.row(r)[i]) * x.row(r)[i];
    const double inv_rms = 1.0 / std::sqrt(sum / cols + 1e-5);
    for (int i = 0; i < cols; ++i) {
      const double expected = x.row(r)[i] * inv_rms * weight.data()[i];
      ASSERT_NEAR(y.row(r)[i], expected, 1e-5 * std::abs(expected) + 1e-6);
    }
  }
}

TEST(SiluMulTest, MatchesDoubleReference) {
  std::mt19937 rng(2);
  const int n = 70000;  // large enough to be split across threads
  Tensor gate = RandomTensor({n}, rng, 4.0f);
  Tensor up = RandomTensor({n}, rng);
  Tensor out({n});
  SiluMul(gate.data(), up.data(), n, out.data());
  for (int i = 0; i < n; ++i) {
    const double g = gate.data()[i];
    const double expected = g / (1.0 + std::exp(-g)) * up.data()[i];
    ASSERT_NEAR(out.data()[i], expected, 1e-6 * std::abs(expected) + 1e-7) << i;
  }
}

TEST(RotaryTest, MatchesRotateHalfInDouble) {
  std::mt19937 rng(3);
  const int heads = 3, head_dim = 16, rows = 5;
  Tensor x = RandomTensor({rows, heads * head_dim}, rng);
  const Tensor original = x;
  std::vector<int64_t> positions = {0, 1, 7, 100, 2047};
  std::vector<float> inv_freq(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * i / head_dim);
  ApplyRotary(x.data(), heads, head_dim, positions, inv_freq);
  for (int r = 0; r < rows; ++r) {
    for (int h = 0; h < heads; ++h) {
      const float* in = original.row(r) + h * head_dim;
      const float* out = x.row(r) + h * head_dim;
      for (int i = 0; i < head_dim / 2; ++i) {
        const double angle = static_cast<double>(static_cast<float>(positions[r]) * inv_freq[i]);
        const double a = in[i], b = in[i + head_dim / 2];
        EXPECT_NEAR(out[i], a * std::cos(angle) - b * std::sin(angle), 1e-5);
        EXPECT_NEAR(out[i + head_dim / 2], b * std::cos(angle) + a * std::sin(angle), 1e-5);
      }
    }
  }
}

// Attention in double: sequence s has `context` cached rows, the last `queries` are queries.
TEST(AttentionTest, BatchedGqaOverSplitBlocksMatchesDouble) {
  std::mt19937 rng(4);
  const AttentionShape shape{8, 2, 20, 0.25f};  // head_dim not a multiple of 16
  const int64_t kv_width = shape.num_kv_heads * shape.head_dim;
  const int64_t q_width = shape.num_heads * shape.head_dim;
  struct Seq {
    int64_t context, queries;
  };
  const std::vector<Seq> seqs = {{9, 9}, {20, 1}, {5, 3}, {1, 1}};
  std::vector<Tensor> keys, values;
  std::vector<std::vector<KvBlock>> blocks;
  std::vector<AttentionSequence> batch;
  int64_t rows = 0;
  for (const Seq& s : seqs) {
    keys.push_back(RandomTensor({s.context, kv_width}, rng));
    values.push_back(RandomTensor({s.context, kv_width}, rng));
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    // Blocks of 4 positions, as a paged cache would hand them out.
    std::vector<KvBlock> seq_blocks;
    for (int64_t p = 0; p < seqs[i].context; p += 4) {
      seq_blocks.push_back(
          {keys[i].row(p), values[i].row(p), std::min<int64_t>(4, seqs[i].context - p)});
    }
    blocks.push_back(seq_blocks);
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    batch.push_back({rows, seqs[i].queries, seqs[i].context, blocks[i]});
    rows += seqs[i].queries;
  }
  Tensor q = RandomTensor({rows, q_width}, rng);
  Tensor out({rows, q_width});
  CausalAttention(q.data(), batch, shape, out.data());

  const int64_t group = shape.num_heads / shape.num_kv_heads;
  for (size_t i = 0; i < seqs.size(); ++i) {
    for (int64_t qi = 0; qi < seqs[i].queries; ++qi) {
      const int64_t row = batch[i].query_begin + qi;
      const int64_t visible = seqs[i].context - seqs[i].queries + qi + 1;
      for (int64_t h = 0; h < shape.num_heads; ++h) {
        const int64_t kvh = h / group;
        std::vector<double> scores(visible);
        for (int64_t j = 0; j < visible; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < shape.head_dim; ++d) {
            dot += static_cast<double>(q.row(row)[h * shape.head_dim + d]) *
                   keys[i].row(j)[kvh * shape.head_dim + d];
          }
          scores[j] = dot * shape.scale;
        }
        const double max_score = *std::max_element(scores.begin(), scores.end());
        double total = 0;
        for (double& s : scores) total += (s = std::exp(s - max_score));
        for (int64_t d = 0; d < shape.head_dim; ++d) {
          double expected = 0;
          for (int64_t j = 0; j < visible; ++j) {
            expected += scores[j] / total * values[i].row(j)[kvh * shape.head_dim + d];
          }
          ASSERT_NEAR(out.row(row)[h * shape.head_dim + d], expected, 2e-5)
              << "sequence " << i << " query " << qi << " head " << h;
        }
      }
    }
  }
}

TEST(MoeRoutingTest, TopKOfSoftmaxRenormalised) {
  std::mt19937 rng(5);
  const int rows = 50, experts = 8, top_k = 2;
  Tensor logits = RandomTensor({rows, experts}, rng, 2.0f);
  const Routing routing = TopKSoftmaxRouting(logits.data(), rows, experts, top_k);
  for (int r = 0; r < rows; ++r) {
    std::vector<int> order(experts);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(),
              [&](int a, int b) { return logits.row(r)[a] > logits.row(r)[b]; });
    double denom = 0;
    for (int i = 0; i < top_k; ++i) denom += std::exp(static_cast<double>(logits.row(r)[order[i]]));
    for (int i = 0; i < top_k; ++i) {
      EXPECT_EQ(routing.experts[r * top_k + i], order[i]);
      EXPECT_NEAR(routing.weights[r * top_k + i],
                  std::exp(static_cast<double>(logits.row(r)[order[i]])) / denom, 1e-6);
    }
  }
}

TEST(CpuBackendTest, SplitColumnsCopiesConsecutiveColumnRanges) {
  std::mt19937 rng(7);
  Tensor x = RandomTensor({5, 12}, rng);
  Tensor a({5, 3}), b({5, 1}), c({5, 8});
  Tensor* const parts[] = {&a, &b, &c};
  CpuBackend().SplitColumns(x, parts);
  for (int r = 0; r < 5; ++r) {
    for (int j = 0; j < 12; ++j) {
      const float got = j < 3 ? a.row(r)[j] : j < 4 ? b.row(r)[0] : c.row(r)[j - 4];
      EXPECT_EQ(got, x.row(r)[j]) << r << ", " << j;
    }
  }
}

TEST(CpuBackendTest, SparseMoeMatchesDenseDoubleComputation) {
  std::mt19937 rng(6);
  const int rows = 11, hidden = 24, inter = 40, experts = 4, top_k = 2;
  CpuBackend backend;
  std::vector<Tensor> w1, w2, w3;
  std::vector<std::unique_ptr<LinearWeight>> prepared;
  std::vector<ExpertWeights> views;
  for (int e = 0; e < experts; ++e) {
    w1.push_back(RandomTensor({inter, hidden}, rng, 0.3f));
    w2.push_back(RandomTensor({hidden, inter}, rng, 0.3f));
    w3.push_back(RandomTensor({inter, hidden}, rng, 0.3f));
    prepared.push_back(backend.PrepareLinear(w1.back(), nullptr));
    prepared.push_back(backend.PrepareLinear(w3.back(), nullptr));
    prepared.push_back(backend.PrepareLinear(w2.back(), nullptr));
    views.push_back({prepared[3 * e].get(), prepared[3 * e + 1].get(), prepared[3 * e + 2].get()});
  }
  Tensor x = RandomTensor({rows, hidden}, rng);
  Tensor router = RandomTensor({rows, experts}, rng, 2.0f);
  Tensor out({rows, hidden});
  backend.SparseMoe(x, router, views, top_k, out);
  const Routing routing = TopKSoftmaxRouting(router.data(), rows, experts, top_k);
  for (int r = 0; r < rows; ++r) {
    std::vector<double> expected(hidden, 0.0);
    for (int i = 0; i < top_k; ++i) {
      const int e = routing.experts[r * top_k + i];
      std::vector<double> act(inter);
      for (int j = 0; j < inter; ++j) {
        double g = 0, u = 0;
        for (int p = 0; p < hidden; ++p) {
          g += static_cast<double>(w1[e].row(j)[p]) * x.row(r)[p];
          u += static_cast<double>(w3[e].row(j)[p]) * x.row(r)[p];
        }
        act[j] = g / (1 + std::exp(-g)) * u;
      }
      for (int o = 0; o < hidden; ++o) {
        double d = 0;
        for (int j = 0; j < inter; ++j) d += w2[e].row(o)[j] * act[j];
        expected[o] += routing.weights[r * top_k + i] * d;
      }
    }
    for (int o = 0; o < hidden; ++o) ASSERT_NEAR(out.row(r)[o], expected[o], 1e-4) << r;
  }
}

}  // namespace
}  // namespace flatfleet::kernels::cpu
