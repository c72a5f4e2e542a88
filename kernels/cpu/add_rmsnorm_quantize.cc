#include "kernels/cpu/add_rmsnorm_quantize.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "kernels/cpu/pointwise.h"
#include "kernels/cpu/quant/rtn_quantizer.h"

namespace flatfleet::kernels::cpu {

float RoundToBf16(float value) { return BF16ToFloat(FloatToBF16(value)); }

absl::StatusOr<AddRmsNormQuantizeResult> AddRmsNormQuantizeInt8(std::span<float> residual,
                                                                std::span<const float> delta,
                                                                int64_t rows, int64_t hidden,
                                                                std::span<const float> weight,
                                                                float eps, float clip_ratio) {
  if (rows < 0 || hidden < 1 || static_cast<int64_t>(residual.size()) != rows * hidden ||
      (!delta.empty() && delta.size() != residual.size()) ||
      static_cast<int64_t>(weight.size()) != hidden) {
    return absl::InvalidArgumentError(
        absl::StrCat("AddRmsNormQuantizeInt8: bad sizes for ", rows, " x ", hidden));
  }
  if (!delta.empty()) AddInPlace(residual.data(), delta.data(), rows * hidden);
  AddRmsNormQuantizeResult result;
  result.normed.resize(rows * hidden);
  RmsNormRows(residual.data(), rows, hidden, weight.data(), eps, result.normed.data());
  for (float& y : result.normed) y = RoundToBf16(y);
  auto codes =
      quant::QuantizeRtn(result.normed, rows, hidden,
                         {.bits = 8, .symmetric = true, .group_size = 0, .clip_ratio = clip_ratio});
  if (!codes.ok()) return codes.status();
  result.codes = *std::move(codes);
  return result;
}

}  // namespace flatfleet::kernels::cpu
