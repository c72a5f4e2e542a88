// The whole Mixtral MoE block composed from the GPU kernels, against cpu::ComposeSparseMoe (the
// CPU backend's SparseMoe) on the tiny Mixtral shape (hidden 256, intermediate 512, 8 experts,
// top-2):
//   routing -> permutation -> gather -> grouped GEMM gate/up (stacked [E, 2I, hidden]) ->
//   SiLU(gate) * up (here on the host, rounded to bf16: the engine's kernel is written
//   elsewhere) -> grouped GEMM down -> unpermute.
// The CPU runs in float32 on the same bf16-rounded x and weights and the same logits.
//
// Tolerance. The GPU rounds to bf16 (2^-9 relative, uniform) the gate and up outputs, the SiLU
// product and the down output (and the final sum for a bf16 output). These independent errors,
// amplified by SiLU's slope at negative gates and summed by the down projection over 512 terms
// of random sign, leave an error of about 2^-8 of the row's rms: an emulation of exactly these
// roundings on the host (300 tokens, 5 seeds) gave maxima of 0.017-0.019 rms. Allowed: 2^-4 of
// the reference row's rms (over 3x those maxima, some 16 standard deviations) plus 2^-7 of the
// element (the final bf16 rounding). A wrong expert, weight or row is an error of the order of
// the rms itself.
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/tensor.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/grouped_gemm.h"
#include "kernels/cuda/moe_permute.h"
#include "kernels/cuda/moe_routing.h"
#include "kernels/cuda/moe_unpermute.h"
#include "tests/gpu/bf16_test_util.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/int8_quant_test_util.h"
#include "tests/quant/test_random.h"

namespace flatfleet::cuda {
namespace {

using testing::AllClose;
using testing::AsBf16;
using testing::Bf16BitsToFloats;
using testing::BitwiseEqual;
using testing::DeviceBuffer;
using testing::Poison;
using testing::RoundAllToBf16;
using testing::ToBf16Bits;

constexpr int64_t kHidden = 256, kIntermediate = 512, kExperts = 8, kTopK = 2;
constexpr double kRowRmsTolerance = 1.0 / (1 << 4);
constexpr double kElementTolerance = 1.0 / (1 << 7);

// The GPU block's buffers for `tokens` tokens, and its two halves (the host SiLU sits between).
class GpuMoeBlock {
 public:
  GpuMoeBlock(int64_t tokens, const std::vector<uint16_t>& x_bits, const std::vector<float>& logits,
              const std::vector<uint16_t>& gate_up_bits, const std::vector<uint16_t>& down_bits,
              GroupedGemmPath path, GemmElementType out_type)
      : tokens_(tokens),
        rows_(tokens * kTopK),
        path_(path),
        out_type_(out_type),
        x_(x_bits),
        logits_(logits),
        gate_up_weights_(gate_up_bits),
        down_weights_(down_bits),
        ids_(rows_),
        weights_(rows_),
        offsets_(kExperts + 1),
        source_(rows_),
        inverse_(rows_),
        xp_(rows_ * kHidden),
        gate_up_(rows_ * 2 * kIntermediate),
        activated_(rows_ * kIntermediate),
        down_(rows_ * kHidden),
        out_f32_(tokens * kHidden),
        out_bf16_(tokens * kHidden) {}

  int64_t rows() const { return rows_; }

  void PoisonAll() {
    Poison(ids_, rows_);
    Poison(weights_, rows_);
    Poison(offsets_, kExperts + 1);
    Poison(source_, rows_);
    Poison(inverse_, rows_);
    Poison(xp_, rows_ * kHidden);
    Poison(gate_up_, rows_ * 2 * kIntermediate);
    Poison(down_, rows_ * kHidden);
    Poison(out_f32_, tokens_ * kHidden);
    Poison(out_bf16_, tokens_ * kHidden);
  }

  // Routing, permutation, gather, gate/up projection.
  absl::Status FirstHalf(cudaStream_t stream) {
    absl::Status s = TopKSoftmaxRouting({.router_logits = logits_.get(),
                                         .rows = tokens_,
                                         .num_experts = kExperts,
                                         .top_k = kTopK,
                                         .expert_ids = ids_.get(),
                                         .expert_weights = weights_.get()},
                                        stream);
    if (s.ok()) {
      s = ComputeMoePermutation({.expert_ids = ids_.get(),
                                 .rows = tokens_,
                                 .top_k = kTopK,
                                 .num_experts = kExperts,
                                 .expert_offsets = offsets_.get(),
                                 .permuted_source_row = source_.get(),
                                 .inverse_permutation = inverse_.get()},
                                stream);
    }
    if (s.ok()) {
      s = GatherPermutedRows({.x = AsBf16(x_),
                              .source_rows = tokens_,
                              .hidden = kHidden,
                              .permuted_source_row = source_.get(),
                              .permuted_rows = rows_,
                              .xp = AsBf16(xp_)},
                             stream);
    }
    if (s.ok()) {
      s = GroupedGemm({.num_experts = kExperts,
                       .total_rows = rows_,
                       .max_rows_per_expert = tokens_,
                       .n = 2 * kIntermediate,
                       .k = kHidden,
                       .expert_offsets = offsets_.get(),
                       .xp = AsBf16(xp_),
                       .weights = AsBf16(gate_up_weights_),
                       .yp = gate_up_.get(),
                       .path = path_},
                      stream);
    }
    return s;
  }

  // silu(gate) * up of every permuted row, rounded to bf16, computed on the host.
  void SiluMulOnHost() {
    const std::vector<float> gate_up = Bf16BitsToFloats(gate_up_.ToHost());
    std::vector<float> activated(rows_ * kIntermediate);
    for (int64_t r = 0; r < rows_; ++r) {
      for (int64_t i = 0; i < kIntermediate; ++i) {
        const float g = gate_up[r * 2 * kIntermediate + i];
        const float u = gate_up[r * 2 * kIntermediate + kIntermediate + i];
        activated[r * kIntermediate + i] = g / (1.0f + std::exp(-g)) * u;
      }
    }
    const std::vector<uint16_t> bits = ToBf16Bits(activated);
    ASSERT_EQ(cudaMemcpy(activated_.get(), bits.data(), bits.size() * 2, cudaMemcpyHostToDevice),
              cudaSuccess);
  }

  // Down projection and unpermute.
  absl::Status SecondHalf(cudaStream_t stream) {
    absl::Status s = GroupedGemm({.num_experts = kExperts,
                                  .total_rows = rows_,
                                  .max_rows_per_expert = tokens_,
                                  .n = kHidden,
                                  .k = kIntermediate,
                                  .expert_offsets = offsets_.get(),
                                  .xp = AsBf16(activated_),
                                  .weights = AsBf16(down_weights_),
                                  .yp = down_.get(),
                                  .path = path_},
                                 stream);
    if (s.ok()) {
      const bool f32 = out_type_ == GemmElementType::kFloat32;
      s = UnpermuteMoeOutput({.yp = down_.get(),
                              .rows = tokens_,
                              .top_k = kTopK,
                              .hidden = kHidden,
                              .expert_ids = ids_.get(),
                              .expert_weights = weights_.get(),
                              .inverse_permutation = inverse_.get(),
                              .out = f32 ? static_cast<void*>(out_f32_.get()) : out_bf16_.get(),
                              .out_type = out_type_},
                             stream);
    }
    return s;
  }

  std::vector<float> Output() const {
    return out_type_ == GemmElementType::kFloat32 ? out_f32_.ToHost()
                                                  : Bf16BitsToFloats(out_bf16_.ToHost());
  }

 private:
  int64_t tokens_, rows_;
  GroupedGemmPath path_;
  GemmElementType out_type_;
  DeviceBuffer<uint16_t> x_;
  DeviceBuffer<float> logits_;
  DeviceBuffer<uint16_t> gate_up_weights_, down_weights_;
  DeviceBuffer<int32_t> ids_;
  DeviceBuffer<float> weights_;
  DeviceBuffer<int32_t> offsets_, source_, inverse_;
  DeviceBuffer<uint16_t> xp_, gate_up_, activated_, down_;
  DeviceBuffer<float> out_f32_;
  DeviceBuffer<uint16_t> out_bf16_;
};

using MoeParam = std::tuple<int64_t, GroupedGemmPath, GemmElementType>;

class SparseMoeGpuBase : public quant::test_util::RandomTest {
 protected:
  std::vector<float> UniformBf16(int64_t count, float half_width) {
    std::vector<float> values(count);
    for (float& v : values) {
      do {
        v = UniformFloat(-half_width, half_width);
      } while (v == 0.0f);
    }
    RoundAllToBf16(values);
    return values;
  }

  // Random inputs and weights, and the CPU reference output.
  void MakeProblem(int64_t tokens) {
    x_ = UniformBf16(tokens * kHidden, 1.0f);
    logits_ = Gaussian(tokens * kExperts);
    gate_.clear();
    up_.clear();
    down_.clear();
    for (int64_t e = 0; e < kExperts; ++e) {
      gate_.push_back(UniformBf16(kIntermediate * kHidden, 0.1f));
      up_.push_back(UniformBf16(kIntermediate * kHidden, 0.1f));
      down_.push_back(UniformBf16(kHidden * kIntermediate, 0.1f));
    }
    kernels::cpu::CpuBackend& cpu = kernels::cpu::DefaultCpuBackend();
    std::vector<std::unique_ptr<kernels::LinearWeight>> linears;
    std::vector<kernels::ExpertWeights> experts;
    for (int64_t e = 0; e < kExperts; ++e) {
      linears.push_back(cpu.PrepareLinear(Tensor({kIntermediate, kHidden}, gate_[e]), nullptr));
      linears.push_back(cpu.PrepareLinear(Tensor({kIntermediate, kHidden}, up_[e]), nullptr));
      linears.push_back(cpu.PrepareLinear(Tensor({kHidden, kIntermediate}, down_[e]), nullptr));
      experts.push_back({linears[3 * e].get(), linears[3 * e + 1].get(), linears[3 * e + 2].get()});
    }
    Tensor out({tokens, kHidden});
    cpu.SparseMoe(Tensor({tokens, kHidden}, x_), Tensor({tokens, kExperts}, logits_), experts,
                  kTopK, out);
    expected_ = out.vector();
  }

  // The stacked device layouts: gate/up [E, 2I, hidden] (gate rows first), down [E, hidden, I].
  std::vector<uint16_t> GateUpBits() const {
    std::vector<float> stacked;
    for (int64_t e = 0; e < kExperts; ++e) {
      stacked.insert(stacked.end(), gate_[e].begin(), gate_[e].end());
      stacked.insert(stacked.end(), up_[e].begin(), up_[e].end());
    }
    return ToBf16Bits(stacked);
  }
  std::vector<uint16_t> DownBits() const {
    std::vector<float> stacked;
    for (const auto& d : down_) stacked.insert(stacked.end(), d.begin(), d.end());
    return ToBf16Bits(stacked);
  }

  std::vector<float> Allowed(int64_t tokens) const {
    std::vector<float> allowed(expected_.size());
    for (int64_t r = 0; r < tokens; ++r) {
      double sum_squares = 0;
      for (int64_t h = 0; h < kHidden; ++h) {
        sum_squares += double{expected_[r * kHidden + h]} * expected_[r * kHidden + h];
      }
      const double rms = std::sqrt(sum_squares / kHidden);
      for (int64_t h = 0; h < kHidden; ++h) allowed[r * kHidden + h] = kRowRmsTolerance * rms;
    }
    return allowed;
  }

  std::vector<float> x_, logits_, expected_;
  std::vector<std::vector<float>> gate_, up_, down_;
};

class SparseMoeGpuTest : public SparseMoeGpuBase, public ::testing::WithParamInterface<MoeParam> {};

TEST_P(SparseMoeGpuTest, MatchesCpuSparseMoe) {
  FF_SKIP_WITHOUT_GPU();
  const auto [tokens, path, out_type] = GetParam();
  MakeProblem(tokens);
  GpuMoeBlock block(tokens, ToBf16Bits(x_), logits_, GateUpBits(), DownBits(), path, out_type);
  block.PoisonAll();
  absl::Status status = block.FirstHalf(nullptr);
  ASSERT_TRUE(status.ok()) << status;
  block.SiluMulOnHost();
  status = block.SecondHalf(nullptr);
  ASSERT_TRUE(status.ok()) << status;
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  EXPECT_TRUE(AllClose(expected_, block.Output(), Allowed(tokens), kElementTolerance));
}

INSTANTIATE_TEST_SUITE_P(
    Tokens, SparseMoeGpuTest,
    ::testing::Combine(::testing::Values(1, 5, 16, 64, 300),
                       ::testing::Values(GroupedGemmPath::kTensorCore, GroupedGemmPath::kSimt),
                       ::testing::Values(GemmElementType::kFloat32, GemmElementType::kBf16)),
    [](const auto& info) {
      return absl::StrCat("tokens", std::get<0>(info.param),
                          std::get<1>(info.param) == GroupedGemmPath::kSimt ? "_simt" : "_tc",
                          std::get<2>(info.param) == GemmElementType::kBf16 ? "_bf16" : "_f32");
    });

// Both halves captured into CUDA graphs (no allocation, no host synchronisation inside) and
// replayed give the same bits as the direct run: every kernel of the block is deterministic.
TEST_F(SparseMoeGpuBase, HalvesCaptureIntoGraphsAndReplayBitExactly) {
  FF_SKIP_WITHOUT_GPU();
  const int64_t tokens = 37;
  MakeProblem(tokens);
  GpuMoeBlock block(tokens, ToBf16Bits(x_), logits_, GateUpBits(), DownBits(),
                    GroupedGemmPath::kTensorCore, GemmElementType::kFloat32);
  cudaStream_t stream;
  FF_CUDA_ASSERT(cudaStreamCreate(&stream));
  ASSERT_TRUE(block.FirstHalf(stream).ok());  // direct run (also sets up the kernels)
  FF_CUDA_ASSERT(cudaStreamSynchronize(stream));
  block.SiluMulOnHost();
  ASSERT_TRUE(block.SecondHalf(stream).ok());
  FF_CUDA_ASSERT(cudaStreamSynchronize(stream));
  const std::vector<float> direct = block.Output();
  EXPECT_TRUE(AllClose(expected_, direct, Allowed(tokens), kElementTolerance));

  const auto capture = [&](const std::function<absl::Status(cudaStream_t)>& half,
                           cudaGraphExec_t* exec) {
    cudaGraph_t graph;
    ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    const absl::Status status = half(stream);
    ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_EQ(cudaGraphInstantiate(exec, graph, 0), cudaSuccess);
    cudaGraphDestroy(graph);
  };
  cudaGraphExec_t first = nullptr, second = nullptr;
  capture([&](cudaStream_t s) { return block.FirstHalf(s); }, &first);
  capture([&](cudaStream_t s) { return block.SecondHalf(s); }, &second);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  block.PoisonAll();
  FF_CUDA_ASSERT(cudaGraphLaunch(first, stream));
  FF_CUDA_ASSERT(cudaStreamSynchronize(stream));
  block.SiluMulOnHost();
  FF_CUDA_ASSERT(cudaGraphLaunch(second, stream));
  FF_CUDA_ASSERT(cudaStreamSynchronize(stream));
  EXPECT_TRUE(BitwiseEqual(direct, block.Output()));
  cudaGraphExecDestroy(first);
  cudaGraphExecDestroy(second);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace flatfleet::cuda
