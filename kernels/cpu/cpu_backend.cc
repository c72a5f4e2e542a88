#include "kernels/cpu/cpu_backend.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/host_execution_context.h"
#include "kernels/cpu/host_kv_pool.h"
#include "kernels/cpu/pointwise.h"
#include "kernels/cpu/rotary.h"
#include "kernels/cpu/sparse_moe.h"

namespace flatfleet::kernels::cpu {
namespace {

using runtime::ConstTensorView;
using runtime::MemoryKind;
using runtime::ScalarType;
using runtime::TensorView;

// Shape mismatches in the Tensor helpers are programming errors of the caller, not bad input.
void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "cpu backend: %s\n", what);
    std::abort();
  }
}

int64_t Rows(const Tensor& t) { return t.rank() == 0 ? 1 : t.size() / t.dim(-1); }

// Views the ops accept: host float32 with unit column stride.
absl::Status CheckHostFloat(const ConstTensorView& view, const char* op, const char* what) {
  if (view.memory == MemoryKind::kDevice || view.type != ScalarType::kFloat32) {
    return absl::InvalidArgumentError(absl::StrCat("cpu backend ", op, ": ", what,
                                                   " must be host float32, got ",
                                                   runtime::ScalarName(view.type)));
  }
  return absl::OkStatus();
}

absl::Status ShapeError(const char* op, const std::string& detail) {
  return absl::InvalidArgumentError(absl::StrCat("cpu backend ", op, ": ", detail));
}

std::string Shape(const ConstTensorView& v) { return absl::StrCat("[", v.rows, ", ", v.cols, "]"); }

const HostKvPool& AsHostPool(const KvPool& pool) { return static_cast<const HostKvPool&>(pool); }

// out = rmsnorm(residual rows) with residual += delta first, on every row or the listed rows.
absl::Status AddRmsNormRows(const TensorView& residual, const ConstTensorView* delta,
                            const WeightTensor& weight, float eps, const TensorView& out,
                            std::span<const int32_t> rows, const char* op) {
  FF_RETURN_IF_ERROR(CheckHostFloat(residual, op, "residual"));
  FF_RETURN_IF_ERROR(CheckHostFloat(out, op, "out"));
  const int64_t cols = residual.cols;
  if (weight.cols() != cols || out.cols != cols) {
    return ShapeError(op, absl::StrCat("residual ", Shape(residual), ", out ", Shape(out),
                                       ", weight [", weight.cols(), "]"));
  }
  if (delta != nullptr) {
    FF_RETURN_IF_ERROR(CheckHostFloat(*delta, op, "delta"));
    if (delta->rows != residual.rows || delta->cols != cols) {
      return ShapeError(op,
                        absl::StrCat("delta ", Shape(*delta), " != residual ", Shape(residual)));
    }
    for (int64_t r = 0; r < residual.rows; ++r) {
      AddInPlace(residual.row<float>(r), delta->row<float>(r), cols);
    }
  }
  const float* gamma = weight.view().as<float>();
  if (rows.empty() && out.rows == residual.rows) {
    if (residual.dense() && out.dense()) {
      RmsNormRows(residual.as<float>(), residual.rows, cols, gamma, eps, out.as<float>());
    } else {
      for (int64_t r = 0; r < residual.rows; ++r) {
        RmsNormRows(residual.row<float>(r), 1, cols, gamma, eps, out.row<float>(r));
      }
    }
    return absl::OkStatus();
  }
  if (static_cast<int64_t>(rows.size()) != out.rows) {
    return ShapeError(op, absl::StrCat(rows.size(), " logit rows for out ", Shape(out)));
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= residual.rows) return ShapeError(op, "logit row out of range");
    RmsNormRows(residual.row<float>(rows[i]), 1, cols, gamma, eps, out.row<float>(i));
  }
  return absl::OkStatus();
}

}  // namespace

CpuLinearWeight::CpuLinearWeight(const Tensor& weight, const Tensor* bias)
    : LinearWeight(weight.dim(0), weight.dim(1)),
      packed_(weight.data(), weight.dim(0), weight.dim(1), bias ? bias->data() : nullptr) {}

CpuLinearWeight::CpuLinearWeight(const ConstTensorView& weight, const Tensor* bias)
    : LinearWeight(weight.rows, weight.cols), packed_(weight, bias ? bias->data() : nullptr) {}

std::unique_ptr<LinearWeight> CpuBackend::PrepareLinear(const Tensor& weight, const Tensor* bias) {
  Check(weight.rank() == 2, "PrepareLinear: weight must be [out, in]");
  Check(bias == nullptr || bias->size() == weight.dim(0), "PrepareLinear: bias must be [out]");
  return std::make_unique<CpuLinearWeight>(weight, bias);
}

absl::StatusOr<std::unique_ptr<WeightTensor>> CpuBackend::PrepareWeight(const ConstTensorView& host,
                                                                        WeightUse use) {
  FF_ASSIGN_OR_RETURN(Tensor values, WidenToFloat(host, "weight"));
  FF_ASSIGN_OR_RETURN(
      runtime::Buffer buffer,
      runtime::Buffer::Allocate(runtime::HostAllocator(),
                                std::max<size_t>(1, values.size() * sizeof(float))));
  std::memcpy(buffer.data(), values.data(), values.size() * sizeof(float));
  const ConstTensorView view(buffer.data(), ScalarType::kFloat32, MemoryKind::kHost, host.rows,
                             host.cols);
  return std::make_unique<WeightTensor>(std::move(buffer), view);
}

absl::StatusOr<std::unique_ptr<ExecutionContext>> CpuBackend::CreateContext() {
  return std::make_unique<HostExecutionContext>();
}

absl::StatusOr<std::unique_ptr<KvPool>> CpuBackend::CreateKvPool(const KvPoolShape& shape,
                                                                 int64_t num_blocks) {
  FF_ASSIGN_OR_RETURN(std::unique_ptr<HostKvPool> pool, HostKvPool::Create(shape, num_blocks));
  return std::unique_ptr<KvPool>(std::move(pool));
}

absl::Status CpuBackend::HostLinear(const LinearWeight& weight, const ConstTensorView& x,
                                    const TensorView& y) {
  const auto& packed = static_cast<const CpuLinearWeight&>(weight).packed();
  if (x.cols != packed.k() || y.cols != packed.n() || y.rows != x.rows || !x.dense() ||
      !y.dense()) {
    return ShapeError("Linear", absl::StrCat("x ", Shape(x), " y ", Shape(y), " for a [",
                                             packed.n(), ", ", packed.k(), "] weight"));
  }
  Gemm(x.as<float>(), x.rows, packed, y.as<float>());
  return absl::OkStatus();
}

absl::Status CpuBackend::Linear(ExecutionContext& context, const LinearWeight& weight,
                                const ConstTensorView& x, const TensorView& y) {
  FF_RETURN_IF_ERROR(CheckHostFloat(x, "Linear", "x"));
  FF_RETURN_IF_ERROR(CheckHostFloat(y, "Linear", "y"));
  return HostLinear(weight, x, y);
}

absl::Status CpuBackend::AddRmsNorm(ExecutionContext& context, const TensorView& residual,
                                    const ConstTensorView* delta, const WeightTensor& weight,
                                    float eps, const TensorView& out) {
  if (out.rows != residual.rows) {
    return ShapeError("AddRmsNorm",
                      absl::StrCat("out ", Shape(out), " for residual ", Shape(residual)));
  }
  return AddRmsNormRows(residual, delta, weight, eps, out, {}, "AddRmsNorm");
}

absl::Status CpuBackend::AddRmsNormLogitRows(ExecutionContext& context, const TensorView& residual,
                                             const ConstTensorView* delta,
                                             const WeightTensor& weight, float eps,
                                             const TensorView& out) {
  const std::vector<int32_t>& rows = context.step().logit_rows;
  if (rows.empty()) {
    if (out.rows != 0) return ShapeError("AddRmsNormLogitRows", "the step has no logit rows");
    return AddRmsNormRows(residual, delta, weight, eps, residual.Rows(0, 0), {}, "AddRmsNorm");
  }
  return AddRmsNormRows(residual, delta, weight, eps, out, rows, "AddRmsNormLogitRows");
}

absl::Status CpuBackend::Embedding(ExecutionContext& context, const WeightTensor& table,
                                   const TensorView& out) {
  FF_RETURN_IF_ERROR(CheckHostFloat(out, "Embedding", "out"));
  const std::vector<int32_t>& ids = context.step().token_ids;
  if (out.rows != static_cast<int64_t>(ids.size()) || out.cols != table.cols()) {
    return ShapeError("Embedding", absl::StrCat("out ", Shape(out), " for ", ids.size(),
                                                " ids of a table ", Shape(table.view())));
  }
  for (int64_t r = 0; r < out.rows; ++r) {
    float* dst = out.row<float>(r);
    if (ids[r] < 0 || ids[r] >= table.rows()) {
      std::fill(dst, dst + out.cols, 0.0f);
    } else {
      std::memcpy(dst, table.view().row<float>(ids[r]), sizeof(float) * out.cols);
    }
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::RotaryKvWrite(ExecutionContext& context, int64_t layer,
                                       const ConstTensorView& qkv, const WeightTensor& inv_freq,
                                       const AttentionShape& shape, const TensorView& q_out,
                                       KvPool& pool) {
  FF_RETURN_IF_ERROR(CheckHostFloat(qkv, "RotaryKvWrite", "qkv"));
  FF_RETURN_IF_ERROR(CheckHostFloat(q_out, "RotaryKvWrite", "q_out"));
  const StepBatch& step = context.step();
  const int64_t q_size = shape.num_heads * shape.head_dim;
  const int64_t kv_size = shape.num_kv_heads * shape.head_dim;
  const int64_t rows = qkv.rows;
  if (qkv.cols != q_size + 2 * kv_size || q_out.rows != rows || q_out.cols != q_size ||
      rows != step.num_rows() || inv_freq.cols() != shape.head_dim / 2 ||
      pool.shape().row_size() != kv_size || layer < 0 || layer >= pool.shape().num_layers) {
    return ShapeError("RotaryKvWrite",
                      absl::StrCat("qkv ", Shape(qkv), " q_out ", Shape(q_out), " layer ", layer));
  }
  // Rotate float32 copies of q and k exactly as the unfused reference does.
  Tensor k({rows, kv_size});
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(q_out.row<float>(r), qkv.row<float>(r), sizeof(float) * q_size);
    std::memcpy(k.row(r), qkv.row<float>(r) + q_size, sizeof(float) * kv_size);
  }
  const std::vector<int64_t> positions(step.positions.begin(), step.positions.end());
  const std::span<const float> frequencies = inv_freq.view().floats();
  if (q_out.dense()) {
    ApplyRotary(q_out.as<float>(), shape.num_heads, shape.head_dim, positions, frequencies);
  } else {
    for (int64_t r = 0; r < rows; ++r) {
      ApplyRotary(q_out.row<float>(r), shape.num_heads, shape.head_dim,
                  std::span<const int64_t>(&positions[r], 1), frequencies);
    }
  }
  ApplyRotary(k.data(), shape.num_kv_heads, shape.head_dim, positions, frequencies);
  static_cast<HostKvPool&>(pool).Write(layer, step.slot_mapping, k.data(), kv_size,
                                       qkv.row<float>(0) + q_size + kv_size, qkv.row_stride);
  return absl::OkStatus();
}

absl::Status CpuBackend::Attention(ExecutionContext& context, int64_t layer,
                                   const ConstTensorView& q, const KvPool& pool,
                                   const AttentionShape& shape, const TensorView& out) {
  FF_RETURN_IF_ERROR(CheckHostFloat(q, "Attention", "q"));
  FF_RETURN_IF_ERROR(CheckHostFloat(out, "Attention", "out"));
  if (q.cols != shape.num_heads * shape.head_dim || out.rows != q.rows || out.cols != q.cols ||
      !q.dense() || !out.dense() || shape.num_heads % shape.num_kv_heads != 0) {
    return ShapeError("Attention", absl::StrCat("q ", Shape(q), " out ", Shape(out)));
  }
  const StepBatch& step = context.step();
  const HostKvPool& host_pool = AsHostPool(pool);
  std::vector<std::vector<KvBlock>> blocks(step.sequences.size());
  std::vector<AttentionSequence> sequences(step.sequences.size());
  for (size_t s = 0; s < step.sequences.size(); ++s) {
    const StepSequence& seq = step.sequences[s];
    blocks[s] = host_pool.Blocks(
        layer,
        std::span<const int32_t>(step.block_tables.data() + seq.block_table_begin, seq.num_blocks),
        seq.context_length);
    sequences[s] = {seq.query_begin, seq.num_queries, seq.context_length, blocks[s]};
  }
  CausalAttention(q.as<float>(), sequences, shape, out.as<float>());
  return absl::OkStatus();
}

absl::Status CpuBackend::SiluMul(ExecutionContext& context, const ConstTensorView& gate_up,
                                 const TensorView& out) {
  FF_RETURN_IF_ERROR(CheckHostFloat(gate_up, "SiluMul", "gate_up"));
  FF_RETURN_IF_ERROR(CheckHostFloat(out, "SiluMul", "out"));
  if (gate_up.cols != 2 * out.cols || gate_up.rows != out.rows) {
    return ShapeError("SiluMul", absl::StrCat("gate_up ", Shape(gate_up), " out ", Shape(out)));
  }
  const int64_t n = out.cols;
  for (int64_t r = 0; r < out.rows; ++r) {
    const float* row = gate_up.row<float>(r);
    cpu::SiluMul(row, row + n, n, out.row<float>(r));
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::SparseMoe(ExecutionContext& context, const ConstTensorView& x,
                                   const ConstTensorView& router_logits,
                                   std::span<const ExpertWeights> experts, int64_t top_k,
                                   const TensorView& out) {
  FF_RETURN_IF_ERROR(CheckHostFloat(x, "SparseMoe", "x"));
  FF_RETURN_IF_ERROR(CheckHostFloat(router_logits, "SparseMoe", "router_logits"));
  FF_RETURN_IF_ERROR(CheckHostFloat(out, "SparseMoe", "out"));
  const int64_t num_experts = static_cast<int64_t>(experts.size());
  if (router_logits.cols != num_experts || router_logits.rows != x.rows || top_k > num_experts ||
      out.rows != x.rows || out.cols != x.cols || !x.dense() || !out.dense() ||
      !router_logits.dense()) {
    return ShapeError("SparseMoe", absl::StrCat("x ", Shape(x), " router ", Shape(router_logits),
                                                " out ", Shape(out)));
  }
  return ComposeSparseMoe([this](const LinearWeight& w, const ConstTensorView& in,
                                 const TensorView& y) { return HostLinear(w, in, y); },
                          x, router_logits, experts, top_k, out);
}

absl::Status CpuBackend::CopyToHost(ExecutionContext& context, const ConstTensorView& from,
                                    std::span<float> to) {
  FF_RETURN_IF_ERROR(CheckHostFloat(from, "CopyToHost", "from"));
  if (static_cast<int64_t>(to.size()) != from.size()) {
    return ShapeError("CopyToHost", "sizes differ");
  }
  for (int64_t r = 0; r < from.rows; ++r) {
    std::memcpy(to.data() + r * from.cols, from.row<float>(r), sizeof(float) * from.cols);
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::CopyFromHost(ExecutionContext& context, std::span<const float> from,
                                      const TensorView& to) {
  FF_RETURN_IF_ERROR(CheckHostFloat(to, "CopyFromHost", "to"));
  if (static_cast<int64_t>(from.size()) != to.size()) {
    return ShapeError("CopyFromHost", "sizes differ");
  }
  for (int64_t r = 0; r < to.rows; ++r) {
    std::memcpy(to.row<float>(r), from.data() + r * to.cols, sizeof(float) * to.cols);
  }
  return absl::OkStatus();
}

// ---- Tensor helpers

void CpuBackend::Linear(const LinearWeight& weight, const Tensor& x, Tensor& y) {
  const absl::Status status = HostLinear(weight, x, y);
  Check(status.ok(), "Linear: shapes");
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
  const absl::Status status =
      ComposeSparseMoe([this](const LinearWeight& w, const ConstTensorView& in,
                              const TensorView& y) { return HostLinear(w, in, y); },
                       x, router_logits, experts, top_k, out);
  Check(status.ok(), "SparseMoe: an expert failed");
}

CpuBackend& DefaultCpuBackend() {
  static CpuBackend* backend = new CpuBackend();
  return *backend;
}

}  // namespace flatfleet::kernels::cpu
