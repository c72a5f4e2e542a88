// How close a model's logits are to reference logits, position by position:
//   KL(p_ref || p_test) = sum_v p_ref(v) (log p_ref(v) - log p_test(v)), softmax in double,
//   top-1 agreement     = fraction of positions whose argmax (lowest index on ties) agrees.

#pragma once

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"

namespace flatfleet::quant {

struct LogitAgreement {
  int64_t positions = 0;
  double mean_kl = 0.0;
  double max_kl = 0.0;
  double top1_agreement = 0.0;
  // Largest reference margin (top-1 minus top-2 logit) among positions whose top-1 changed;
  // 0 when none did. Small values mean only near-ties flipped.
  double max_flipped_margin = 0.0;
};

// reference and test are [positions, vocab], row-major.
absl::StatusOr<LogitAgreement> CompareLogits(std::span<const float> reference,
                                             std::span<const float> test, int64_t vocab);

}  // namespace flatfleet::quant
