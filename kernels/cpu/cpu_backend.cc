#include "kernels/cpu/cpu_backend.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/pointwise.h"
#include "kernels/cpu/rotary.h"
#include "kernels/cpu/sparse_moe.h"

namespace flatfleet::kernels::cpu {
namespace {

// Shape mismatches here are programming errors in the model code, not bad input.
void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "cpu backend: %s\n", what);
    std::abort();
  }
}

int64_t Rows(const Tensor& t) { return t.rank() == 0 ? 1 : t.size() / t.dim(-1); }

}  // namespace

CpuLinearWeight::CpuLinearWeight(const Tensor& weight, const Tensor* bias)
    : LinearWeight(weight.dim(0), weight.dim(1)),
      packed_(weight.data(), weight.dim(0), weight.dim(1), bias ? bias->data() : nullptr) {}

std::unique_ptr<LinearWeight> CpuBackend::PrepareLinear(const Tensor& weight, const Tensor* bias) {
  Check(weight.rank() == 2, "PrepareLinear: weight must be [out, in]");
  Check(bias == nullptr || bias->size() == weight.dim(0), "PrepareLinear: bias must be [out]");
  return std::make_unique<CpuLinearWeight>(weight, bias);
}

void CpuBackend::Linear(const LinearWeight& weight, const Tensor& x, Tensor& y) {
  const auto& packed = static_cast<const CpuLinearWeight&>(weight).packed();
  Check(x.dim(-1) == packed.k(), "Linear: x columns != in_features");
  Check(y.dim(-1) == packed.n() && Rows(y) == Rows(x), "Linear: y shape");
  Gemm(x.data(), Rows(x), packed, y.data());
}

void CpuBackend::RmsNorm(const Tensor& x, std::span<const float> weight, float eps, Tensor& y) {
  Check(x.size() == y.size() && static_cast<int64_t>(weight.size()) == x.dim(-1),
        "RmsNorm: shapes");
  RmsNormRows(x.data(), Rows(x), x.dim(-1), weight.data(), eps, y.data());
}

void CpuBackend::Rotary(Tensor& x, int64_t num_heads, int64_t head_dim,
                        std::span<const int64_t> positions, std::span<const float> inv_freq) {
  Check(x.dim(-1) == num_heads * head_dim && Rows(x) == static_cast<int64_t>(positions.size()) &&
            static_cast<int64_t>(inv_freq.size()) == head_dim / 2,
        "Rotary: shapes");
  ApplyRotary(x.data(), num_heads, head_dim, positions, inv_freq);
}

void CpuBackend::Attention(const Tensor& q, std::span<const AttentionSequence> sequences,
                           const AttentionShape& shape, Tensor& out) {
  Check(q.dim(-1) == shape.num_heads * shape.head_dim && out.size() == q.size() &&
            shape.num_heads % shape.num_kv_heads == 0,
        "Attention: shapes");
  CausalAttention(q.data(), sequences, shape, out.data());
}

void CpuBackend::SiluMul(const Tensor& gate, const Tensor& up, Tensor& out) {
  Check(gate.size() == up.size() && gate.size() == out.size(), "SiluMul: shapes");
  cpu::SiluMul(gate.data(), up.data(), gate.size(), out.data());
}

void CpuBackend::Add(Tensor& x, const Tensor& y) {
  Check(x.size() == y.size(), "Add: shapes");
  AddInPlace(x.data(), y.data(), x.size());
}

void CpuBackend::Embedding(const Tensor& table, std::span<const int32_t> ids, Tensor& out) {
  Check(out.dim(-1) == table.dim(-1) && Rows(out) == static_cast<int64_t>(ids.size()),
        "Embedding: shapes");
  std::vector<int64_t> rows(ids.begin(), ids.end());
  for (int64_t row : rows) Check(row >= 0 && row < table.dim(0), "Embedding: id out of range");
  cpu::GatherRows(table.data(), table.dim(-1), rows, out.data());
}

void CpuBackend::GatherRows(const Tensor& x, std::span<const int64_t> rows, Tensor& out) {
  Check(out.dim(-1) == x.dim(-1) && Rows(out) == static_cast<int64_t>(rows.size()),
        "GatherRows: shapes");
  cpu::GatherRows(x.data(), x.dim(-1), rows, out.data());
}

void CpuBackend::SplitColumns(const Tensor& x, std::span<Tensor* const> outputs) {
  const int64_t rows = Rows(x);
  const int64_t width = x.dim(-1);
  int64_t total = 0;
  for (const Tensor* out : outputs) {
    Check(Rows(*out) == rows, "SplitColumns: row counts");
    total += out->dim(-1);
  }
  Check(total == width, "SplitColumns: widths do not add up");
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = x.row(r);
    for (Tensor* out : outputs) {
      const int64_t cols = out->dim(-1);
      std::memcpy(out->row(r), src, sizeof(float) * cols);
      src += cols;
    }
  }
}

void CpuBackend::SparseMoe(const Tensor& x, const Tensor& router_logits,
                           std::span<const ExpertWeights> experts, int64_t top_k, Tensor& out) {
  const int64_t rows = Rows(x);
  const int64_t num_experts = static_cast<int64_t>(experts.size());
  Check(router_logits.dim(-1) == num_experts && Rows(router_logits) == rows &&
            top_k <= num_experts && out.size() == x.size(),
        "SparseMoe: shapes");
  ComposeSparseMoe(*this, x, router_logits, experts, top_k, out);
}

CpuBackend& DefaultCpuBackend() {
  static CpuBackend* backend = new CpuBackend();
  return *backend;
}

}  // namespace flatfleet::kernels::cpu
