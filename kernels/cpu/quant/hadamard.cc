#include "kernels/cpu/quant/hadamard.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/cpu/quant/dense_matrix.h"
#include "kernels/cpu/quant/seeded_random.h"

namespace flatfleet::quant {
namespace {

// The odd block is dense (m^2 work per row, m^3 to build); LLM widths have small odd factors.
constexpr int64_t kMaxRandomBlock = 1024;

bool IsPrime(int64_t value) {
  if (value < 2) return false;
  for (int64_t d = 2; d * d <= value; ++d) {
    if (value % d == 0) return false;
  }
  return true;
}

bool PaleyApplies(int64_t order) {
  const int64_t q = order - 1;
  return IsPrime(q) && q % 4 == 3;
}

}  // namespace

void FastWalshHadamard(double* data, int64_t length, int64_t stride) {
  for (int64_t half = 1; half < length; half *= 2) {
    for (int64_t start = 0; start < length; start += 2 * half) {
      for (int64_t i = start; i < start + half; ++i) {
        const double a = data[i * stride];
        const double b = data[(i + half) * stride];
        data[i * stride] = a + b;
        data[(i + half) * stride] = a - b;
      }
    }
  }
}

absl::StatusOr<std::vector<int8_t>> PaleyHadamard(int64_t order) {
  if (!PaleyApplies(order)) {
    return absl::InvalidArgumentError(absl::StrCat("no Paley-I Hadamard matrix of order ", order));
  }
  const int64_t q = order - 1;
  // Quadratic character chi(x) of GF(q).
  std::vector<int8_t> chi(q, -1);
  chi[0] = 0;
  for (int64_t x = 1; x < q; ++x) chi[(x * x) % q] = 1;
  // H = I + S with S = [[0, 1^T], [-1, Q]], Q[i][j] = chi(j - i) (skew since q = 3 mod 4).
  std::vector<int8_t> h(order * order);
  for (int64_t i = 0; i < order; ++i) {
    for (int64_t j = 0; j < order; ++j) {
      int8_t s;
      if (i == 0) {
        s = j == 0 ? 0 : 1;
      } else if (j == 0) {
        s = -1;
      } else {
        s = chi[((j - i) % q + q) % q];
      }
      h[i * order + j] = static_cast<int8_t>(s + (i == j ? 1 : 0));
    }
  }
  return h;
}

absl::StatusOr<RandomizedHadamard> RandomizedHadamard::Create(int64_t size, uint64_t seed) {
  if (size < 1) return absl::InvalidArgumentError(absl::StrCat("size must be >= 1, got ", size));
  RandomizedHadamard out;
  int64_t odd = size;
  while (odd % 2 == 0) odd /= 2;
  const int64_t two_power = size / odd;
  if (odd > kMaxRandomBlock) {
    return absl::InvalidArgumentError(
        absl::StrCat("size ", size, " has an odd factor ", odd, " larger than ", kMaxRandomBlock));
  }
  SplitMix64 rng(seed);
  out.signs_.resize(size);
  for (double& sign : out.signs_) sign = rng.NextSign();
  if (odd == 1) {
    out.block_ = {1.0};
  } else if (two_power % 4 == 0 && PaleyApplies(4 * odd)) {
    out.block_size_ = 4 * odd;
    out.block_is_paley_ = true;
    auto paley = PaleyHadamard(out.block_size_);
    if (!paley.ok()) return paley.status();
    const double norm = 1.0 / std::sqrt(static_cast<double>(out.block_size_));
    out.block_.resize(paley->size());
    for (size_t i = 0; i < paley->size(); ++i) out.block_[i] = (*paley)[i] * norm;
  } else {
    out.block_size_ = odd;
    out.block_ = RandomOrthogonal(odd, rng.Next());
  }
  out.power_of_two_ = size / out.block_size_;
  return out;
}

void RandomizedHadamard::ApplyToRow(double* row) const {
  const int64_t p = power_of_two_, m = block_size_;
  for (int64_t i = 0; i < p * m; ++i) row[i] *= signs_[i];
  const double norm = 1.0 / std::sqrt(static_cast<double>(p));
  for (int64_t j = 0; j < m; ++j) FastWalshHadamard(row + j, p, m);
  if (m == 1) {
    for (int64_t i = 0; i < p; ++i) row[i] *= norm;
    return;
  }
  std::vector<double> product(m);
  for (int64_t i = 0; i < p; ++i) {
    double* segment = row + i * m;
    for (int64_t c = 0; c < m; ++c) {
      double sum = 0.0;
      for (int64_t r = 0; r < m; ++r) sum += segment[r] * block_[r * m + c];
      product[c] = sum * norm;
    }
    for (int64_t c = 0; c < m; ++c) segment[c] = product[c];
  }
}

void RandomizedHadamard::ApplyToActivationRows(std::span<float> rows, int64_t num_rows) const {
  const int64_t n = size();
  std::vector<double> row(n);
  for (int64_t r = 0; r < num_rows; ++r) {
    for (int64_t i = 0; i < n; ++i) row[i] = rows[r * n + i];
    ApplyToRow(row.data());
    for (int64_t i = 0; i < n; ++i) rows[r * n + i] = static_cast<float>(row[i]);
  }
}

std::vector<double> RandomizedHadamard::Materialize() const {
  const int64_t n = size();
  std::vector<double> q(n * n, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    q[i * n + i] = 1.0;
    ApplyToRow(q.data() + i * n);
  }
  return q;
}

}  // namespace flatfleet::quant
