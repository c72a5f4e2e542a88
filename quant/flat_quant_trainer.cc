#include "quant/flat_quant_trainer.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/thread_pool.h"
#include "kernels/cpu/quant/dense_matrix.h"
#include "kernels/cpu/quant/seeded_random.h"
#include "quant/in_order_matmul.h"
#include "quant/uninitialized_buffer.h"

namespace flatfleet::quant {
namespace {

using Matrix = std::vector<double>;  // row-major
// The [rows, n] arrays: every producer below writes all of a buffer's elements, in parallel.
using Buffer = UninitializedBuffer;

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Every heavy loop below runs on the objective's thread pool, split only over independent outputs
// (rows, output elements): each value is computed by one thread in the order the single-threaded
// scalar code used, so the results are bit-identical at any thread count (and to that code).

// Per row viewed as n1 x n2: out_r = left (n1 x n1) * row * right (n2 x n2). An empty `left` or
// `right` means the identity. `out` is resized (its storage reused: Loss calls this per chunk).
void Sandwich(ThreadPool& pool, const Buffer& rows, int64_t count, const Matrix& left,
              const Matrix& right, int64_t n1, int64_t n2, Buffer& out) {
  const int64_t n = n1 * n2;
  out.resize(count * n);
  pool.ParallelFor(count, [&](int64_t begin, int64_t end) {
    Buffer tmp(left.empty() || right.empty() ? 0 : n);
    for (int64_t r = begin; r < end; ++r) {
      const double* z = rows.data() + r * n;
      double* o = out.data() + r * n;
      const double* middle = z;
      if (!left.empty()) {
        double* product = right.empty() ? o : tmp.data();
        InOrderMatMulOnThisThread(MatrixView::RowMajor(left.data(), n1, n1),
                                  MatrixView::RowMajor(z, n1, n2), product, n2);
        middle = product;
      }
      if (!right.empty()) {
        InOrderMatMulOnThisThread(MatrixView::RowMajor(middle, n1, n2),
                                  MatrixView::RowMajor(right.data(), n2, n2), o, n2);
      } else if (left.empty()) {
        std::copy(z, z + n, o);
      }
    }
  });
}

Buffer Sandwich(ThreadPool& pool, const Buffer& rows, int64_t count, const Matrix& left,
                const Matrix& right, int64_t n1, int64_t n2) {
  Buffer out;
  Sandwich(pool, rows, count, left, right, n1, n2, out);
  return out;
}

// sum_r A_r B_r^T (n1 x n1) for n1 x n2 row views: each row's product (its own sum over the n2
// columns), added in row order. The products of a wave of rows are computed in parallel.
Matrix SumABt(ThreadPool& pool, const Buffer& a, const Buffer& b, int64_t count, int64_t n1,
              int64_t n2) {
  const int64_t n = n1 * n2, size = n1 * n1;
  constexpr int64_t kWaveRows = 64;  // bounds the products held to 64 n1 x n1 matrices
  Matrix out(size, 0.0), products(std::min(count, kWaveRows) * size);
  for (int64_t w0 = 0; w0 < count; w0 += kWaveRows) {
    const int64_t wave = std::min(kWaveRows, count - w0);
    pool.ParallelFor(wave, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        InOrderMatMulOnThisThread(
            MatrixView::RowMajor(a.data() + (w0 + r) * n, n1, n2),
            MatrixView::RowMajor(b.data() + (w0 + r) * n, n1, n2).Transposed(),
            products.data() + r * size, n1);
      }
    });
    for (int64_t r = 0; r < wave; ++r) {
      for (int64_t i = 0; i < size; ++i) out[i] += products[r * size + i];
    }
  }
  return out;
}

// sum_r A_r^T B_r (n2 x n2) for n1 x n2 row views: with the rows stacked into [count * n1, n2]
// matrices this is one product, A^T B, whose terms run over (r, i) in ascending order.
Matrix SumAtB(ThreadPool& pool, const Buffer& a, const Buffer& b, int64_t count, int64_t n1,
              int64_t n2) {
  Matrix out(n2 * n2);
  InOrderMatMul(pool, MatrixView::RowMajor(a.data(), count * n1, n2).Transposed(),
                MatrixView::RowMajor(b.data(), count * n1, n2), out.data(), n2);
  return out;
}

// values [rows, n] (floats, as doubles) times, or divided by, factor[k] per column, into `out`
// (resized).
void ScaleColumns(ThreadPool& pool, std::span<const float> values, int64_t rows,
                  const std::vector<double>& factor, bool divide, Buffer& out) {
  const int64_t n = static_cast<int64_t>(factor.size());
  out.resize(rows * n);
  pool.ParallelFor(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* in = values.data() + r * n;
      double* o = out.data() + r * n;
      if (divide) {
        for (int64_t k = 0; k < n; ++k) o[k] = double{in[k]} / factor[k];
      } else {
        for (int64_t k = 0; k < n; ++k) o[k] = double{in[k]} * factor[k];
      }
    }
  });
}

Buffer ScaleColumns(ThreadPool& pool, std::span<const float> values, int64_t rows,
                    const std::vector<double>& factor, bool divide) {
  Buffer out;
  ScaleColumns(pool, values, rows, factor, divide, out);
  return out;
}

// a (r x k) * b (k x c), row-major.
Matrix MatMul(ThreadPool& pool, const Matrix& a, const Matrix& b, int64_t r, int64_t k, int64_t c) {
  Matrix out(r * c);
  InOrderMatMul(pool, MatrixView::RowMajor(a.data(), r, k), MatrixView::RowMajor(b.data(), k, c),
                out.data(), c);
  return out;
}

// out[k] += sign * sum_r a[r][k] b[r][k] ([rows, n] arrays), the terms added one at a time in row
// order; columns in parallel.
void AddColumnProducts(ThreadPool& pool, const Buffer& a, const Buffer& b, int64_t rows,
                       double sign, std::vector<double>& out) {
  const int64_t n = static_cast<int64_t>(out.size());
  pool.ParallelFor(
      n,
      [&](int64_t begin, int64_t end) {
        for (int64_t r = 0; r < rows; ++r) {
          const double* ar = a.data() + r * n;
          const double* br = b.data() + r * n;
          if (sign < 0) {
            for (int64_t k = begin; k < end; ++k) out[k] -= ar[k] * br[k];
          } else {
            for (int64_t k = begin; k < end; ++k) out[k] += ar[k] * br[k];
          }
        }
      },
      /*min_chunk=*/256);
}

std::vector<double> Exp(const std::vector<double>& values) {
  std::vector<double> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = std::exp(values[i]);
  return out;
}

// What the backward pass of one quantizer needs.
struct QuantizerTape {
  Buffer t;      // u / s per element
  Buffer level;  // the quantized value / s (clamped, rounded or replayed)
  std::vector<uint8_t> inside;
  std::vector<double> scale, max_abs;  // per group
  std::vector<int64_t> arg_max;        // per group, element index
};

// Symmetric b-bit fake quantization of `values` ([rows, cols]) in groups of `group` columns, into
// `out` (resized; `out` and `tape` keep their storage across calls).
void FakeQuantize(ThreadPool& pool, const Buffer& values, int64_t rows, int64_t cols, int64_t group,
                  int bits, double alpha, const std::vector<double>* frozen_offsets,
                  const std::vector<uint8_t>* frozen_inside, std::vector<double>* record_offsets,
                  std::vector<uint8_t>* record_inside, QuantizerTape& tape, Buffer& out) {
  const double qmax = static_cast<double>((1 << (bits - 1)) - 1);
  const int64_t groups = cols / group;
  const int64_t total = rows * cols;
  out.resize(total);
  tape.t.resize(total);
  tape.level.resize(total);
  tape.inside.assign(total, 0);
  tape.scale.assign(rows * groups, 0.0);
  tape.max_abs.assign(rows * groups, 0.0);
  tape.arg_max.assign(rows * groups, -1);
  if (record_offsets != nullptr) record_offsets->assign(total, 0.0);
  if (record_inside != nullptr) record_inside->assign(total, 0);
  pool.ParallelFor(rows, [&](int64_t row_begin, int64_t row_end) {
    for (int64_t r = row_begin; r < row_end; ++r) {
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t begin = r * cols + g * group;
        double max_abs = 0.0;
        int64_t arg_max = begin;
        for (int64_t i = begin; i < begin + group; ++i) {
          if (std::fabs(values[i]) > max_abs) {
            max_abs = std::fabs(values[i]);
            arg_max = i;
          }
        }
        const int64_t gi = r * groups + g;
        tape.max_abs[gi] = max_abs;
        tape.arg_max[gi] = arg_max;
        if (max_abs == 0.0) {  // all zero: quantizes to zero, no gradient
          std::fill(out.begin() + begin, out.begin() + begin + group, 0.0);
          std::fill(tape.t.begin() + begin, tape.t.begin() + begin + group, 0.0);
          std::fill(tape.level.begin() + begin, tape.level.begin() + begin + group, 0.0);
          continue;
        }
        const double s = alpha * max_abs / qmax;
        tape.scale[gi] = s;
        for (int64_t i = begin; i < begin + group; ++i) {
          const double t = values[i] / s;
          double offset;
          bool inside;
          if (frozen_offsets != nullptr) {
            offset = (*frozen_offsets)[i];
            inside = (*frozen_inside)[i] != 0;
          } else {
            offset = std::nearbyint(t) - t;
            inside = std::fabs(t) <= qmax;
          }
          const double level = inside ? t + offset : (t > 0 ? qmax : -qmax);
          tape.t[i] = t;
          tape.level[i] = level;
          tape.inside[i] = inside ? 1 : 0;
          out[i] = level * s;
          if (record_offsets != nullptr) (*record_offsets)[i] = offset;
          if (record_inside != nullptr) (*record_inside)[i] = inside ? 1 : 0;
        }
      }
    }
  });
}

// Straight-through backward of FakeQuantize: returns dL/dvalues, adds dL/dalpha.
Buffer FakeQuantizeBackward(ThreadPool& pool, const Buffer& values, const Buffer& grad,
                            int64_t rows, int64_t cols, int64_t group, int bits, double alpha,
                            const QuantizerTape& tape, double& grad_alpha) {
  const double qmax = static_cast<double>((1 << (bits - 1)) - 1);
  const int64_t groups = cols / group;
  Buffer out(rows * cols);
  // Each group's term of dL/dalpha, summed in group order after the parallel loop.
  std::vector<double> alpha_terms(rows * groups, 0.0);
  pool.ParallelFor(rows, [&](int64_t row_begin, int64_t row_end) {
    for (int64_t r = row_begin; r < row_end; ++r) {
      std::fill(out.begin() + r * cols, out.begin() + (r + 1) * cols, 0.0);
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t gi = r * groups + g;
        if (tape.max_abs[gi] == 0.0) continue;
        const int64_t begin = r * cols + g * group;
        double grad_scale = 0.0;
        for (int64_t i = begin; i < begin + group; ++i) {
          // value = level * s; inside: level = t + offset with t = u / s, so d value / du = 1 and
          // d value / ds = offset = level - t; outside: d value / ds = level (= +-qmax).
          if (tape.inside[i]) {
            out[i] = grad[i];
            grad_scale += grad[i] * (tape.level[i] - tape.t[i]);
          } else {
            grad_scale += grad[i] * tape.level[i];
          }
        }
        // s = alpha * max|u| / qmax.
        alpha_terms[gi] = grad_scale * tape.max_abs[gi] / qmax;
        const int64_t arg_max = tape.arg_max[gi];
        out[arg_max] += grad_scale * alpha / qmax * (values[arg_max] > 0 ? 1.0 : -1.0);
      }
    }
  });
  for (int64_t gi = 0; gi < rows * groups; ++gi) {
    if (tape.max_abs[gi] != 0.0) grad_alpha += alpha_terms[gi];
  }
  return out;
}

absl::Status CheckParams(const FlatQuantParams& params, int64_t n) {
  if (params.n1 < 1 || params.n2 < 1 || params.n1 * params.n2 != n ||
      static_cast<int64_t>(params.p1.size()) != params.n1 * params.n1 ||
      static_cast<int64_t>(params.p2.size()) != params.n2 * params.n2 ||
      static_cast<int64_t>(params.log_scales.size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat("FlatQuant parameters do not match n = ", n,
                                                   " (n1 = ", params.n1, ", n2 = ", params.n2,
                                                   ")"));
  }
  return absl::OkStatus();
}

Matrix Hadamardish(int64_t size, uint64_t seed) {
  if (std::has_single_bit(static_cast<uint64_t>(size))) {
    Matrix h(size * size);
    const double norm = 1.0 / std::sqrt(static_cast<double>(size));
    for (int64_t i = 0; i < size; ++i) {
      for (int64_t j = 0; j < size; ++j) {
        h[i * size + j] = (std::popcount(static_cast<uint64_t>(i & j)) % 2 ? -norm : norm);
      }
    }
    return h;
  }
  return RandomOrthogonal(size, seed);
}

Matrix Identity(int64_t size) {
  Matrix m(size * size, 0.0);
  for (int64_t i = 0; i < size; ++i) m[i * size + i] = 1.0;
  return m;
}

// Parameters as one vector for Adam, in a fixed order.
std::vector<double> Flatten(const FlatQuantParams& p) {
  std::vector<double> v;
  v.insert(v.end(), p.p1.begin(), p.p1.end());
  v.insert(v.end(), p.p2.begin(), p.p2.end());
  v.insert(v.end(), p.log_scales.begin(), p.log_scales.end());
  v.push_back(p.activation_clip_logit);
  v.push_back(p.weight_clip_logit);
  return v;
}

void Unflatten(const std::vector<double>& v, FlatQuantParams& p) {
  auto it = v.begin();
  std::copy(it, it + p.p1.size(), p.p1.begin());
  it += p.p1.size();
  std::copy(it, it + p.p2.size(), p.p2.begin());
  it += p.p2.size();
  std::copy(it, it + p.log_scales.size(), p.log_scales.begin());
  it += p.log_scales.size();
  p.activation_clip_logit = *it++;
  p.weight_clip_logit = *it;
}

}  // namespace

double FlatQuantParams::activation_clip() const { return Sigmoid(activation_clip_logit); }
double FlatQuantParams::weight_clip() const { return Sigmoid(weight_clip_logit); }

absl::StatusOr<FlatQuantObjective> FlatQuantObjective::Create(const FlatQuantProblem& problem,
                                                              ThreadPool* pool) {
  const int64_t n = problem.in_features;
  if (problem.rows < 1 || problem.out_features < 1 || n < 1 ||
      static_cast<int64_t>(problem.inputs.size()) != problem.rows * n ||
      static_cast<int64_t>(problem.weight.size()) != problem.out_features * n) {
    return absl::InvalidArgumentError(absl::StrCat("FlatQuant problem: ", problem.inputs.size(),
                                                   " inputs and ", problem.weight.size(),
                                                   " weights do not match [", problem.rows, ", ", n,
                                                   "] and [", problem.out_features, ", ", n, "]"));
  }
  if (problem.activation_bits < 2 || problem.activation_bits > 8 || problem.weight_bits < 2 ||
      problem.weight_bits > 8) {
    return absl::InvalidArgumentError("FlatQuant problem: bits must be in 2..8");
  }
  if (problem.weight_group_size < 0 ||
      (problem.weight_group_size > 0 && n % problem.weight_group_size != 0)) {
    return absl::InvalidArgumentError(absl::StrCat("FlatQuant problem: weight group size ",
                                                   problem.weight_group_size, " does not divide ",
                                                   n));
  }
  FlatQuantObjective objective;
  objective.problem_ = problem;
  objective.pool_ = pool != nullptr ? pool : &ThreadPool::Default();
  const int64_t m = problem.rows, out = problem.out_features;
  objective.target_.assign(m * out, 0.0);
  // X W^T, the weight in chunks of rows as Loss takes them (the doubles of W are never all held).
  const std::vector<double> ones(n, 1.0);  // scaling by 1: the floats widened, exactly
  const Buffer x = ScaleColumns(*objective.pool_, problem.inputs, m, ones, /*divide=*/false);
  const int64_t chunk = std::clamp<int64_t>(kLossChunkValues / n, 1, out);
  Buffer w;
  for (int64_t j0 = 0; j0 < out; j0 += chunk) {
    const int64_t c = std::min(chunk, out - j0);
    ScaleColumns(*objective.pool_, problem.weight.subspan(j0 * n, c * n), c, ones, false, w);
    InOrderMatMul(*objective.pool_, MatrixView::RowMajor(x.data(), m, n),
                  MatrixView::RowMajor(w.data(), c, n).Transposed(), objective.target_.data() + j0,
                  out);
  }
  double norm2 = 0.0;
  for (double t : objective.target_) norm2 += t * t;
  objective.target_norm2_ = norm2 > 0.0 ? norm2 : 1.0;
  return objective;
}

absl::StatusOr<FlatQuantLoss> FlatQuantObjective::Evaluate(const FlatQuantParams& params,
                                                           QuantizerMode mode,
                                                           const RoundingState* frozen,
                                                           RoundingState* record,
                                                           std::span<const int64_t> rows) const {
  FlatQuantLoss result;
  FlatQuantParams weight_gradient;
  FF_ASSIGN_OR_RETURN(result.loss, EvaluateUntied(params, params, mode, frozen, record,
                                                  &result.gradient, &weight_gradient, rows));
  FlatQuantParams& g = result.gradient;
  for (size_t i = 0; i < g.p1.size(); ++i) g.p1[i] += weight_gradient.p1[i];
  for (size_t i = 0; i < g.p2.size(); ++i) g.p2[i] += weight_gradient.p2[i];
  for (size_t i = 0; i < g.log_scales.size(); ++i) g.log_scales[i] += weight_gradient.log_scales[i];
  g.weight_clip_logit = weight_gradient.weight_clip_logit;
  return result;
}

absl::StatusOr<double> FlatQuantObjective::EvaluateUntied(
    const FlatQuantParams& act, const FlatQuantParams& wgt, QuantizerMode mode,
    const RoundingState* frozen, RoundingState* record, FlatQuantParams* act_grad_out,
    FlatQuantParams* wgt_grad_out, std::span<const int64_t> output_rows) const {
  const FlatQuantProblem& pr = problem_;
  const int64_t n = pr.in_features, m = pr.rows;
  // The weight rows and target columns the loss covers.
  std::span<const float> weight = pr.weight;
  std::span<const double> target = target_;
  double target_norm2 = target_norm2_;
  int64_t out = pr.out_features;
  std::vector<float> weight_subset;
  std::vector<double> target_subset;
  if (!output_rows.empty()) {
    out = static_cast<int64_t>(output_rows.size());
    weight_subset.resize(out * n);
    target_subset.resize(m * out);
    double norm2 = 0.0;
    for (int64_t j = 0; j < out; ++j) {
      const int64_t row = output_rows[j];
      if (row < 0 || row >= pr.out_features) {
        return absl::InvalidArgumentError("FlatQuant: output row out of range");
      }
      std::copy(pr.weight.begin() + row * n, pr.weight.begin() + (row + 1) * n,
                weight_subset.begin() + j * n);
      for (int64_t i = 0; i < m; ++i) {
        target_subset[i * out + j] = target_[i * pr.out_features + row];
        norm2 += target_subset[i * out + j] * target_subset[i * out + j];
      }
    }
    weight = weight_subset;
    target = target_subset;
    target_norm2 = norm2 > 0.0 ? norm2 : 1.0;
  }
  FF_RETURN_IF_ERROR(CheckParams(act, n));
  FF_RETURN_IF_ERROR(CheckParams(wgt, n));
  if (act.n1 != wgt.n1) return absl::InvalidArgumentError("FlatQuant: sides differ in n1");
  const int64_t n1 = act.n1, n2 = act.n2;
  const bool quantize = mode == QuantizerMode::kSte;
  if (frozen != nullptr &&
      (!quantize || static_cast<int64_t>(frozen->activation_offsets.size()) != m * n ||
       static_cast<int64_t>(frozen->weight_offsets.size()) != out * n)) {
    return absl::InvalidArgumentError("FlatQuant: frozen rounding state does not match");
  }
  // The weight side's inverses.
  auto p1_inverse = InvertMatrix(wgt.p1, n1);
  if (!p1_inverse.ok()) return absl::InvalidArgumentError("FlatQuant: P1 is singular");
  auto p2_inverse = InvertMatrix(wgt.p2, n2);
  if (!p2_inverse.ok()) return absl::InvalidArgumentError("FlatQuant: P2 is singular");
  const Matrix& a1 = *p1_inverse;                // P1^-1
  const Matrix a2 = Transpose(*p2_inverse, n2);  // P2^-T
  const Matrix a1t = Transpose(a1, n1);          // P1^-T
  const Matrix& p2_inv = *p2_inverse;            // P2^-1 = A2^T
  const Matrix p1t = Transpose(act.p1, n1);      // P1^T (activation side)
  const Matrix p2t = Transpose(act.p2, n2);      // P2^T (activation side)

  ThreadPool& pool = *pool_;
  const Buffer z = ScaleColumns(pool, pr.inputs, m, Exp(act.log_scales), /*divide=*/true);
  const Buffer v = ScaleColumns(pool, weight, out, Exp(wgt.log_scales), /*divide=*/false);
  const Buffer x_t = Sandwich(pool, z, m, p1t, act.p2, n1, n2);  // rows of X diag(s)^-1 P
  const Buffer w_t = Sandwich(pool, v, out, a1, a2, n1, n2);     // rows of W diag(s) P^-T

  const double alpha_a = act.activation_clip(), alpha_w = wgt.weight_clip();
  const int64_t wgroup = pr.weight_group_size == 0 ? n : pr.weight_group_size;
  QuantizerTape tape_a, tape_w;
  Buffer qa, qw;
  if (!quantize) {
    qa = x_t;
    qw = w_t;
  } else {
    FakeQuantize(pool, x_t, m, n, n, pr.activation_bits, alpha_a,
                 frozen ? &frozen->activation_offsets : nullptr,
                 frozen ? &frozen->activation_inside : nullptr,
                 record ? &record->activation_offsets : nullptr,
                 record ? &record->activation_inside : nullptr, tape_a, qa);
    FakeQuantize(pool, w_t, out, n, wgroup, pr.weight_bits, alpha_w,
                 frozen ? &frozen->weight_offsets : nullptr,
                 frozen ? &frozen->weight_inside : nullptr,
                 record ? &record->weight_offsets : nullptr,
                 record ? &record->weight_inside : nullptr, tape_w, qw);
  }

  // Y = Qa Qw^T, the O(rows * out * in) term.
  Buffer grad_y(m * out);
  InOrderMatMul(pool, MatrixView::RowMajor(qa.data(), m, n),
                MatrixView::RowMajor(qw.data(), out, n).Transposed(), grad_y.data(), out);
  double loss = 0.0;
  for (int64_t i = 0; i < m * out; ++i) {
    const double e = grad_y[i] - target[i];
    loss += e * e;
    grad_y[i] = 2.0 * e / target_norm2;
  }
  if (act_grad_out == nullptr || wgt_grad_out == nullptr) return loss / target_norm2;

  // dL/dQa = G Qw, dL/dQw = G^T Qa.
  Buffer grad_qa(m * n), grad_qw(out * n);
  InOrderMatMul(pool, MatrixView::RowMajor(grad_y.data(), m, out),
                MatrixView::RowMajor(qw.data(), out, n), grad_qa.data(), n);
  InOrderMatMul(pool, MatrixView::RowMajor(grad_y.data(), m, out).Transposed(),
                MatrixView::RowMajor(qa.data(), m, n), grad_qw.data(), n);
  double grad_alpha_a = 0.0, grad_alpha_w = 0.0;
  const Buffer grad_xt = quantize
                             ? FakeQuantizeBackward(pool, x_t, grad_qa, m, n, n, pr.activation_bits,
                                                    alpha_a, tape_a, grad_alpha_a)
                             : grad_qa;
  const Buffer grad_wt = quantize
                             ? FakeQuantizeBackward(pool, w_t, grad_qw, out, n, wgroup,
                                                    pr.weight_bits, alpha_w, tape_w, grad_alpha_w)
                             : grad_qw;

  for (FlatQuantParams* g : {act_grad_out, wgt_grad_out}) {
    g->n1 = n1;
    g->n2 = n2;
    g->p1.assign(n1 * n1, 0.0);
    g->p2.assign(n2 * n2, 0.0);
    g->log_scales.assign(n, 0.0);
    g->activation_clip_logit = 0.0;
    g->weight_clip_logit = 0.0;
  }
  // Activations: Xt_r = P1^T Z_r P2.
  //   dL/dP1 = sum_r Z_r P2 Gx_r^T, dL/dP2 = sum_r Z_r^T P1 Gx_r, dL/dZ_r = P1 Gx_r P2^T.
  FlatQuantParams& ga = *act_grad_out;
  ga.p1 = SumABt(pool, Sandwich(pool, z, m, {}, act.p2, n1, n2), grad_xt, m, n1, n2);
  ga.p2 = SumAtB(pool, z, Sandwich(pool, grad_xt, m, act.p1, {}, n1, n2), m, n1, n2);
  const Buffer grad_z = Sandwich(pool, grad_xt, m, act.p1, p2t, n1, n2);
  AddColumnProducts(pool, grad_z, z, m, -1.0, ga.log_scales);           // dZ = -Z dsig
  ga.activation_clip_logit = grad_alpha_a * alpha_a * (1.0 - alpha_a);  // alpha = sigmoid(logit)
  // Weights: Wt_r = A1 V_r A2 with A1 = P1^-1, A2 = P2^-T.
  //   dL/dA1 = sum_r Gw_r (V_r A2)^T, dL/dA2 = sum_r (A1 V_r)^T Gw_r, dL/dV_r = A1^T Gw_r A2^T.
  FlatQuantParams& gw = *wgt_grad_out;
  const Matrix grad_a1 = SumABt(pool, grad_wt, Sandwich(pool, v, out, {}, a2, n1, n2), out, n1, n2);
  const Matrix grad_a2 = SumAtB(pool, Sandwich(pool, v, out, a1, {}, n1, n2), grad_wt, out, n1, n2);
  const Buffer grad_v = Sandwich(pool, grad_wt, out, a1t, p2_inv, n1, n2);
  AddColumnProducts(pool, grad_v, v, out, 1.0, gw.log_scales);  // dV = V dsig
  // d(P1^-1) = -P1^-1 dP1 P1^-1  =>  dL/dP1 = -P1^-T (dL/dA1) P1^-T.
  // A2 = P2^-T: dA2 = -P2^-T dP2^T P2^-T  =>  dL/dP2 = -P2^-T (dL/dA2)^T P2^-T.
  const Matrix from_a1 = MatMul(pool, MatMul(pool, a1t, grad_a1, n1, n1, n1), a1t, n1, n1, n1);
  const Matrix from_a2 =
      MatMul(pool, MatMul(pool, a2, Transpose(grad_a2, n2), n2, n2, n2), a2, n2, n2, n2);
  for (int64_t i = 0; i < n1 * n1; ++i) gw.p1[i] = -from_a1[i];
  for (int64_t i = 0; i < n2 * n2; ++i) gw.p2[i] = -from_a2[i];
  gw.weight_clip_logit = grad_alpha_w * alpha_w * (1.0 - alpha_w);
  return loss / target_norm2;
}

absl::StatusOr<double> FlatQuantObjective::Loss(const FlatQuantParams& params,
                                                int64_t chunk_values) const {
  // Every step of the quantized forward is row-local on the weight side (scaling, sandwich,
  // group quantization, each output's dot product), so chunks of weight rows give the same
  // errors; they are summed in Evaluate's order.
  const FlatQuantProblem& pr = problem_;
  const int64_t n = pr.in_features, m = pr.rows, out = pr.out_features;
  FF_RETURN_IF_ERROR(CheckParams(params, n));
  const int64_t n1 = params.n1, n2 = params.n2;
  auto p1_inverse = InvertMatrix(params.p1, n1);
  if (!p1_inverse.ok()) return absl::InvalidArgumentError("FlatQuant: P1 is singular");
  auto p2_inverse = InvertMatrix(params.p2, n2);
  if (!p2_inverse.ok()) return absl::InvalidArgumentError("FlatQuant: P2 is singular");
  const Matrix& a1 = *p1_inverse;                // P1^-1
  const Matrix a2 = Transpose(*p2_inverse, n2);  // P2^-T
  const Matrix p1t = Transpose(params.p1, n1);   // P1^T

  ThreadPool& pool = *pool_;
  const std::vector<double> scales = Exp(params.log_scales);
  Buffer qa;
  {
    const Buffer z = ScaleColumns(pool, pr.inputs, m, scales, /*divide=*/true);
    const Buffer x_t = Sandwich(pool, z, m, p1t, params.p2, n1, n2);
    QuantizerTape tape;
    FakeQuantize(pool, x_t, m, n, n, pr.activation_bits, params.activation_clip(), nullptr, nullptr,
                 nullptr, nullptr, tape, qa);
  }
  const int64_t wgroup = pr.weight_group_size == 0 ? n : pr.weight_group_size;
  const int64_t chunk = std::clamp<int64_t>(chunk_values / n, 1, out);
  Buffer errors(m * out);
  // The chunk's arrays, allocated once: fresh ones per chunk cost as much in page faults as the
  // quantizer's arithmetic.
  Buffer v, w_t, qw, y(m * chunk);
  QuantizerTape tape;
  for (int64_t j0 = 0; j0 < out; j0 += chunk) {
    const int64_t c = std::min(chunk, out - j0);
    ScaleColumns(pool, pr.weight.subspan(j0 * n, c * n), c, scales, /*divide=*/false, v);
    Sandwich(pool, v, c, a1, a2, n1, n2, w_t);
    FakeQuantize(pool, w_t, c, n, wgroup, pr.weight_bits, params.weight_clip(), nullptr, nullptr,
                 nullptr, nullptr, tape, qw);
    InOrderMatMul(pool, MatrixView::RowMajor(qa.data(), m, n),
                  MatrixView::RowMajor(qw.data(), c, n).Transposed(), y.data(), c);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < c; ++j) {
        errors[i * out + j0 + j] = y[i * c + j] - target_[i * out + j0 + j];
      }
    }
  }
  double loss = 0.0;
  for (double e : errors) loss += e * e;
  return loss / target_norm2_;
}

FlatQuantParams InitialFlatQuantParams(const FlatQuantProblem& problem,
                                       const FlatQuantOptions& options) {
  const int64_t n = problem.in_features;
  FlatQuantParams params;
  params.n1 = KroneckerLeftFactor(n);
  params.n2 = n / params.n1;
  if (options.init == FlatQuantInit::kHadamard) {
    params.p1 = Hadamardish(params.n1, options.seed);
    params.p2 = Hadamardish(params.n2, options.seed + 1);
  } else {
    params.p1 = Identity(params.n1);
    params.p2 = Identity(params.n2);
  }
  params.log_scales.assign(n, 0.0);
  if (options.smoothquant_init) {
    std::vector<double> x_max(n, 0.0), w_max(n, 0.0);
    for (int64_t i = 0; i < problem.rows; ++i)
      for (int64_t k = 0; k < n; ++k)
        x_max[k] = std::max(x_max[k], std::fabs(double{problem.inputs[i * n + k]}));
    for (int64_t j = 0; j < problem.out_features; ++j)
      for (int64_t k = 0; k < n; ++k)
        w_max[k] = std::max(w_max[k], std::fabs(double{problem.weight[j * n + k]}));
    double mean = 0.0;
    for (int64_t k = 0; k < n; ++k) {
      params.log_scales[k] =
          x_max[k] > 0.0 && w_max[k] > 0.0 ? 0.5 * (std::log(x_max[k]) - std::log(w_max[k])) : 0.0;
      mean += params.log_scales[k] / n;
    }
    for (double& s : params.log_scales) s -= mean;
  }
  params.activation_clip_logit = 4.0;
  // sigmoid(30) rounds to 1 in float: no weight clipping unless it is learned.
  params.weight_clip_logit = options.learn_weight_clip ? 4.0 : 30.0;
  return params;
}

absl::StatusOr<FlatQuantResult> TrainFlatQuant(const FlatQuantProblem& full_problem,
                                               const FlatQuantOptions& options) {
  FlatQuantProblem problem = full_problem;
  if (options.max_rows > 0 && problem.rows > options.max_rows) {
    problem.rows = options.max_rows;
    problem.inputs = problem.inputs.first(problem.rows * problem.in_features);
  }
  FF_ASSIGN_OR_RETURN(FlatQuantObjective objective,
                      FlatQuantObjective::Create(problem, options.pool));
  FlatQuantParams params = InitialFlatQuantParams(problem, options);
  std::vector<double> theta = Flatten(params);
  const size_t count = theta.size();
  // Per-parameter learning rates: the two clip logits are last.
  std::vector<double> rate(count, options.learning_rate);
  rate[count - 2] = options.clip_learning_rate;
  rate[count - 1] = options.learn_weight_clip ? options.clip_learning_rate : 0.0;
  std::vector<double> first(count, 0.0), second(count, 0.0);
  constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEpsilon = 1e-8;

  FlatQuantResult result;
  // The full objective's loss only (no gradient), in chunks of output channels.
  FF_ASSIGN_OR_RETURN(result.initial_loss, objective.Loss(params));
  result.params = params;
  result.final_loss = result.initial_loss;

  // Each step: a seeded random subset of output channels (a fresh shuffle per epoch over them).
  const int64_t out = problem.out_features;
  const int64_t per_step = std::clamp<int64_t>(options.output_rows_per_step, 1, out);
  std::vector<int64_t> order(out);
  for (int64_t j = 0; j < out; ++j) order[j] = j;
  SplitMix64 random(options.seed ^ 0xF1A7C0DEULL);
  int64_t cursor = out;
  std::vector<int64_t> rows(per_step);
  for (int step = 0; step < options.steps; ++step) {
    if (per_step < out) {
      for (int64_t j = 0; j < per_step; ++j) {
        if (cursor == out) {
          for (int64_t i = out - 1; i > 0; --i) {
            std::swap(order[i], order[random.Next() % static_cast<uint64_t>(i + 1)]);
          }
          cursor = 0;
        }
        rows[j] = order[cursor++];
      }
      std::sort(rows.begin(), rows.end());
    }
    Unflatten(theta, params);
    absl::StatusOr<FlatQuantLoss> evaluated = objective.Evaluate(
        params, QuantizerMode::kSte, nullptr, nullptr,
        per_step < out ? std::span<const int64_t>(rows) : std::span<const int64_t>());
    if (!evaluated.ok()) {
      return absl::Status(evaluated.status().code(),
                          absl::StrCat("FlatQuant training step ", step + 1, " of ", options.steps,
                                       ": ", evaluated.status().message()));
    }
    if (!std::isfinite(evaluated->loss)) {
      return absl::InternalError(absl::StrCat("FlatQuant training step ", step + 1, " of ",
                                              options.steps, ": the loss is not finite"));
    }
    const std::vector<double> grad = Flatten(evaluated->gradient);
    const double correction1 = 1.0 - std::pow(kBeta1, step + 1);
    const double correction2 = 1.0 - std::pow(kBeta2, step + 1);
    for (size_t i = 0; i < count; ++i) {
      first[i] = kBeta1 * first[i] + (1.0 - kBeta1) * grad[i];
      second[i] = kBeta2 * second[i] + (1.0 - kBeta2) * grad[i] * grad[i];
      theta[i] -=
          rate[i] * (first[i] / correction1) / (std::sqrt(second[i] / correction2) + kEpsilon);
      if (!std::isfinite(theta[i])) {
        return absl::InternalError(absl::StrCat("FlatQuant training step ", step + 1, " of ",
                                                options.steps, ": a parameter is not finite"));
      }
    }
  }
  // Judge the final iterate on the full objective; keep the initialisation if it is not better.
  Unflatten(theta, params);
  absl::StatusOr<double> final_loss = objective.Loss(params);
  if (!final_loss.ok()) {
    return absl::Status(
        final_loss.status().code(),
        absl::StrCat("FlatQuant: the trained transform: ", final_loss.status().message()));
  }
  if (!std::isfinite(*final_loss)) {
    return absl::InternalError("FlatQuant: the trained transform's loss is not finite");
  }
  result.trained_loss = *final_loss;
  if (*final_loss < result.final_loss) {
    result.final_loss = *final_loss;
    result.params = params;
  }
  return result;
}

}  // namespace flatfleet::quant
