#include "quant/logit_agreement.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"

namespace flatfleet::quant {
namespace {

std::vector<double> LogSoftmax(const float* logits, int64_t vocab) {
  double max_logit = logits[0];
  for (int64_t v = 1; v < vocab; ++v) max_logit = std::max<double>(max_logit, logits[v]);
  double sum = 0.0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(logits[v] - max_logit);
  const double log_sum = max_logit + std::log(sum);
  std::vector<double> out(vocab);
  for (int64_t v = 0; v < vocab; ++v) out[v] = logits[v] - log_sum;
  return out;
}

int64_t ArgMax(const float* logits, int64_t vocab) {
  return std::max_element(logits, logits + vocab) - logits;
}

}  // namespace

absl::StatusOr<LogitAgreement> CompareLogits(std::span<const float> reference,
                                             std::span<const float> test, int64_t vocab) {
  if (vocab <= 0 || reference.size() != test.size() || reference.empty() ||
      reference.size() % vocab != 0) {
    return absl::InvalidArgumentError(absl::StrCat("CompareLogits: ", reference.size(), " and ",
                                                   test.size(), " logits, vocabulary ", vocab));
  }
  LogitAgreement result;
  result.positions = static_cast<int64_t>(reference.size()) / vocab;
  int64_t agree = 0;
  double kl_sum = 0.0;
  for (int64_t p = 0; p < result.positions; ++p) {
    const float* ref = reference.data() + p * vocab;
    const float* got = test.data() + p * vocab;
    const std::vector<double> log_p = LogSoftmax(ref, vocab);
    const std::vector<double> log_q = LogSoftmax(got, vocab);
    double kl = 0.0;
    for (int64_t v = 0; v < vocab; ++v) kl += std::exp(log_p[v]) * (log_p[v] - log_q[v]);
    kl = std::max(kl, 0.0);  // rounding can make an exact match slightly negative
    kl_sum += kl;
    result.max_kl = std::max(result.max_kl, kl);
    const int64_t ref_top = ArgMax(ref, vocab);
    if (ref_top == ArgMax(got, vocab)) {
      ++agree;
    } else {
      float second = -std::numeric_limits<float>::infinity();
      for (int64_t v = 0; v < vocab; ++v) {
        if (v != ref_top) second = std::max(second, ref[v]);
      }
      result.max_flipped_margin =
          std::max<double>(result.max_flipped_margin, ref[ref_top] - second);
    }
  }
  result.mean_kl = kl_sum / result.positions;
  result.top1_agreement = static_cast<double>(agree) / result.positions;
  return result;
}

}  // namespace flatfleet::quant
