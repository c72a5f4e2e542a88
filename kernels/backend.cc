#include "kernels/backend.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/thread_pool.h"
#include "kernels/random_hash.h"

namespace flatfleet::kernels {
namespace {

float ElementAsFloat(const runtime::ConstTensorView& view, int64_t r, int64_t c) {
  switch (view.type) {
    case runtime::ScalarType::kFloat32:
      return view.row<float>(r)[c];
    case runtime::ScalarType::kBFloat16:
      return BF16ToFloat(view.row<uint16_t>(r)[c]);
    case runtime::ScalarType::kFloat16:
      return HalfToFloat(view.row<uint16_t>(r)[c]);
    default:
      return 0.0f;
  }
}

}  // namespace

absl::StatusOr<Tensor> WidenToFloat(const runtime::ConstTensorView& view, std::string_view what) {
  if (view.memory == runtime::MemoryKind::kDevice) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), ": expected host memory"));
  }
  if (view.type != runtime::ScalarType::kFloat32 && view.type != runtime::ScalarType::kBFloat16 &&
      view.type != runtime::ScalarType::kFloat16) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), ": a ",
                                                   runtime::ScalarName(view.type),
                                                   " tensor is not a float weight"));
  }
  Tensor out({view.rows, view.cols});
  // Rows in parallel: a layer's weights are widened on every load and every quantization pass.
  ThreadPool::Default().ParallelFor(
      view.rows,
      [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          float* dst = out.row(r);
          for (int64_t c = 0; c < view.cols; ++c) dst[c] = ElementAsFloat(view, r, c);
        }
      },
      std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, view.cols)));
  return out;
}

absl::StatusOr<std::unique_ptr<LinearWeight>> Backend::PrepareNamedLinear(
    const LinearSource& source) {
  absl::StatusOr<Tensor> weight = WidenToFloat(source.weight, source.name);
  if (!weight.ok()) return weight.status();
  if (source.bias == nullptr) return PrepareLinear(*weight, nullptr);
  absl::StatusOr<Tensor> bias = WidenToFloat(*source.bias, source.name);
  if (!bias.ok()) return bias.status();
  Tensor flat_bias({bias->size()}, std::move(bias->vector()));
  return PrepareLinear(*weight, &flat_bias);
}

absl::StatusOr<std::unique_ptr<LinearWeight>> Backend::PrepareRandomLinear(std::string_view name,
                                                                           int64_t out, int64_t in,
                                                                           uint64_t seed,
                                                                           float stddev) {
  Tensor weight({out, in});
  const float scale = stddev * std::sqrt(3.0f);
  for (int64_t i = 0; i < weight.size(); ++i)
    weight.data()[i] = scale * HashToSymmetricUniform(seed, i);
  return PrepareNamedLinear({name, weight, nullptr});
}

absl::StatusOr<std::unique_ptr<LinearWeight>> Backend::PrepareQuantizedLinear(
    const QuantizedLinearSource& source) {
  return absl::UnimplementedError(absl::StrCat(
      "layer '", std::string(source.name), "': backend ", std::string(name()),
      " has no integer GEMMs (quantized layers run on the CPU integer reference or on cuda)"));
}

absl::StatusOr<std::unique_ptr<LinearWeight>> Backend::PrepareRandomQuantizedLinear(
    std::string_view layer, int64_t out, int64_t in, uint64_t seed, float stddev,
    const RandomQuantizedFormat& format) {
  return absl::UnimplementedError(
      absl::StrCat("layer '", std::string(layer), "': backend ", std::string(name()),
                   " cannot generate random quantized layers (use --device cuda)"));
}

absl::Status Backend::SampleTokens(ExecutionContext& context,
                                   const runtime::ConstTensorView& logits,
                                   std::span<const DeviceSamplingParams> params,
                                   std::span<int32_t> tokens, std::span<float> logprobs,
                                   std::span<DeviceTopLogprob> top_logprobs) {
  return absl::UnimplementedError(
      absl::StrCat("backend ", std::string(name()), " samples on the host (engine::Sampler)"));
}

}  // namespace flatfleet::kernels
