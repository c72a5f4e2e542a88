#include "kernels/cuda/backend/cuda_quantized_linear.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "kernels/cpu/quant/hadamard.h"
#include "kernels/cpu/quant/integer_scale.h"
#include "kernels/cpu/quant/packed_int4_matrix.h"
#include "kernels/cpu/quant/quantized_matrix.h"
#include "kernels/cuda/alignment.h"
#include "kernels/cuda/bias_add.h"
#include "kernels/cuda/hadamard_transform.h"
#include "kernels/cuda/int8_activation_quantizer.h"
#include "kernels/cuda/int8_dequant_epilogue.h"
#include "kernels/cuda/int8_gemm.h"
#include "kernels/cuda/integer_scale_epilogue.h"
#include "kernels/cuda/kronecker_quantize.h"
#include "kernels/cuda/kronecker_transform.h"
#include "kernels/cuda/random_fill.h"
#include "kernels/cuda/w4a8_decode_gemm.h"
#include "kernels/cuda/w4a8_fragment_layout.h"
#include "kernels/cuda/w4a8_gemm_checks.h"
#include "kernels/cuda/w4a8_midm_gemm.h"
#include "kernels/cuda/w4a8_prefill_gemm.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/device_allocators.h"

namespace flatfleet::kernels::cuda_backend {
namespace {

constexpr int64_t kKMultiple = 32;  // W4A8's K granule (W8A8 needs 16)
// The GEMMs' int32 bound: K * 127 * 127 must stay below 2^31 (8-bit weights; 4-bit allow more,
// one bound keeps the message simple).
constexpr int64_t kMaxK = 133144;

int64_t RoundUp(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

absl::Status Refuse(std::string_view name, const std::string& why) {
  return absl::InvalidArgumentError(
      absl::StrCat("layer '", std::string(name), "': ", why,
                   " has no CUDA kernel yet (run this checkpoint with --device cpu)"));
}

template <typename T>
absl::StatusOr<runtime::Buffer> UploadVector(const std::vector<T>& host, int device) {
  FF_ASSIGN_OR_RETURN(runtime::Buffer buffer,
                      runtime::Buffer::Allocate(runtime::cuda::DeviceAllocator(device),
                                                std::max<size_t>(16, host.size() * sizeof(T))));
  if (!host.empty()) {
    FF_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(buffer.data(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  return buffer;
}

// The stored matrix with zero codes appended to each row up to `padded_cols`.
quant::QuantizedMatrix PadColumns(const quant::QuantizedMatrix& matrix, int64_t padded_cols) {
  quant::QuantizedMatrix padded = matrix;
  if (padded_cols == matrix.cols) return padded;
  padded.cols = padded_cols;
  padded.codes.assign(matrix.rows * padded_cols, 0);
  for (int64_t r = 0; r < matrix.rows; ++r) {
    std::memcpy(padded.codes.data() + r * padded_cols, matrix.codes.data() + r * matrix.cols,
                matrix.cols);
  }
  return padded;
}

// The operands the decode and mma.sync W4A8 GEMMs share (their argument structs name them alike).
template <typename Gemm>
Gemm W4A8Operands(const CudaQuantizedLinearWeight& weight, int64_t rows, const void* codes,
                  const void* scales) {
  Gemm gemm;
  gemm.m = rows;
  gemm.n = weight.out_features();
  gemm.k = weight.padded_in;
  gemm.group_size = weight.group_size;
  gemm.x_codes = static_cast<const int8_t*>(codes);
  gemm.x_scales = static_cast<const uint16_t*>(scales);
  gemm.w_words = static_cast<const uint32_t*>(weight.codes.data());
  gemm.w_unsigned_nibbles = weight.unsigned_nibbles;
  gemm.w_scales = static_cast<const uint16_t*>(weight.scales.data());
  gemm.w_zero_points = weight.zero_points.bytes() > 0
                           ? static_cast<const int8_t*>(weight.zero_points.data())
                           : nullptr;
  return gemm;
}

// The operand and output fields both fragment-layout GEMMs' argument structs name alike.
template <typename Gemm>
Gemm W4A8FragmentOperands(const CudaQuantizedLinearWeight& weight, int64_t rows,
                          const int8_t* codes, const uint16_t* scales, const runtime::TensorView& y,
                          cuda::GemmElementType y_type) {
  Gemm gemm;
  gemm.m = rows;
  gemm.n = weight.out_features();
  gemm.k = weight.padded_in;
  gemm.group_size = weight.group_size;
  gemm.x_codes = codes;
  gemm.x_scales = scales;
  gemm.w_fragments = static_cast<const uint32_t*>(weight.fragment_words.data());
  gemm.w_fragment_scales = static_cast<const uint32_t*>(weight.fragment_scales.data());
  gemm.w_unsigned_nibbles = weight.unsigned_nibbles;
  gemm.epilogue_add = static_cast<const float*>(weight.epilogue.data());
  gemm.y = y.data;
  gemm.y_stride = y.row_stride;
  gemm.y_type = y_type;
  return gemm;
}

// The activation quantizer's settings of `source` (int8_activation_quantizer.h), checked on the
// host so that the device gather never reads outside x.
absl::Status CheckActivationSide(const QuantizedLinearSource& source) {
  const std::string name(source.name);
  const int64_t k = source.weight->cols;
  if (source.activation_bits < 2 || source.activation_bits > 8) {
    return absl::InvalidArgumentError(absl::StrCat("layer '", name, "': ", source.activation_bits,
                                                   "-bit activations (2..8 run)"));
  }
  if (source.static_activation_scale != 0) {
    const float scale = HalfToFloat(source.static_activation_scale);
    if (!(scale > 0.0f) || !std::isfinite(scale)) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer '", name, "': static activation scale ", scale));
    }
  }
  const int64_t in = source.in_features == 0 ? k : source.in_features;
  if (in <= 0 || (source.input_sources.empty() && in != k)) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer '", name, "': ", in, " inputs for a weight of ", k, " columns"));
  }
  if (!source.input_sources.empty()) {
    if (static_cast<int64_t>(source.input_sources.size()) != k) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer '", name, "': ", source.input_sources.size(), " input sources for K = ", k));
    }
    for (int64_t c = 0; c < k; ++c) {
      if (source.input_sources[c] < 0 || source.input_sources[c] >= in) {
        return absl::InvalidArgumentError(absl::StrCat("layer '", name, "': input source ",
                                                       source.input_sources[c], " of column ", c,
                                                       " is outside [0, ", in, ")"));
      }
    }
  }
  if (source.rotation != nullptr) {
    const quant::RandomizedHadamard& rotation = *source.rotation;
    if (!source.input_sources.empty() || !source.input_divisors.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer '", name, "': a Hadamard rotation with a gather or divisors (one transform)"));
    }
    if (rotation.size() != k || in != k || static_cast<int64_t>(rotation.signs().size()) != k ||
        static_cast<int64_t>(rotation.block().size()) !=
            rotation.block_size() * rotation.block_size()) {
      return absl::InvalidArgumentError(absl::StrCat("layer '", name, "': a Hadamard rotation of ",
                                                     rotation.size(), " for K = ", k));
    }
    if (k > cuda::kHadamardMaxSize) {
      return Refuse(source.name, absl::StrCat("a Hadamard rotation of ", k,
                                              " inputs (the kernel keeps a row of doubles in "
                                              "shared memory: at most ",
                                              cuda::kHadamardMaxSize, ")"));
    }
  }
  if (source.kronecker.n1 != 0) {
    const QuantizedLinearSource::KroneckerFactors& factors = source.kronecker;
    if (source.rotation != nullptr || !source.input_sources.empty() ||
        !source.input_divisors.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer '", name, "': a Kronecker transform with another transform (one transform)"));
    }
    if (factors.n1 < 1 || factors.n2 < 1 || factors.n1 * factors.n2 != k || in != k ||
        static_cast<int64_t>(factors.scales.size()) != k ||
        static_cast<int64_t>(factors.p1.size()) != factors.n1 * factors.n1 ||
        static_cast<int64_t>(factors.p2.size()) != factors.n2 * factors.n2) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer '", name, "': a Kronecker transform of ", factors.n1, " x ",
                       factors.n2, " (", factors.scales.size(), " scales, ", factors.p1.size(),
                       " + ", factors.p2.size(), " factor entries) for K = ", k));
    }
    for (float scale : factors.scales) {
      if (!(scale > 0.0f) || !std::isfinite(scale)) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer '", name, "': Kronecker smoothing scale ", scale));
      }
    }
    if (cuda::KroneckerRowsMinSharedBytes(factors.n1, factors.n2) >
        cuda::kKroneckerMaxSharedBytes) {
      return Refuse(source.name,
                    absl::StrCat("a Kronecker transform of ", factors.n1, " x ", factors.n2,
                                 " (the kernel keeps the row and P1 in shared memory: at most ",
                                 cuda::kKroneckerMaxSharedBytes, " bytes)"));
    }
  }
  if (!source.input_divisors.empty()) {
    if (static_cast<int64_t>(source.input_divisors.size()) != k) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer '", name, "': ", source.input_divisors.size(), " input divisors for K = ", k));
    }
    for (float divisor : source.input_divisors) {
      if (!(divisor > 0.0f) || !std::isfinite(divisor)) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer '", name, "': input divisor ", divisor));
      }
    }
  }
  return absl::OkStatus();
}

// Integer Scale: per chunk of rows, GemmW4A8's exact group sums, then the int32 fold and one
// float scale per output (integer_scale_epilogue.h), written to y.
absl::Status RunIntegerScaleOnCodes(const CudaQuantizedLinearWeight& weight, int64_t rows,
                                    const int8_t* codes, const uint16_t* scales,
                                    const runtime::TensorView& y, runtime::WorkspaceArena& arena,
                                    cudaStream_t stream) {
  if (rows != y.rows || weight.out_features() != y.cols) {
    return absl::InvalidArgumentError(absl::StrCat("quantized linear: y is ", y.rows, " x ", y.cols,
                                                   ", expected ", rows, " x ",
                                                   weight.out_features()));
  }
  const int64_t out = weight.out_features();
  const int64_t groups = weight.padded_in / weight.group_size;
  const int64_t chunk = IntegerScaleChunkRows(weight, rows);
  const runtime::WorkspaceArena::Mark mark = arena.mark();
  FF_ASSIGN_OR_RETURN(void* group_sums, arena.TakeBytes(chunk * out * groups * 4));
  FF_ASSIGN_OR_RETURN(void* float_sums, arena.TakeBytes(chunk * out * 4));
  const size_t element = y.type == runtime::ScalarType::kFloat32 ? 4 : 2;
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t m = std::min(chunk, rows - r0);
    auto gemm =
        W4A8Operands<cuda::DeviceW4A8Gemm>(weight, m, codes + r0 * weight.padded_in, scales + r0);
    gemm.y = static_cast<float*>(float_sums);  // the float-scale result, not used
    gemm.group_accumulators = static_cast<int32_t*>(group_sums);
    FF_RETURN_IF_ERROR(cuda::GemmW4A8(gemm, stream));
    cuda::DeviceIntegerScaleEpilogue epilogue;
    epilogue.rows = m;
    epilogue.cols = out;
    epilogue.groups = groups;
    epilogue.group_sums = static_cast<const int32_t*>(group_sums);
    epilogue.multipliers = static_cast<const int32_t*>(weight.integer_multipliers.data());
    epilogue.x_scales = scales + r0;
    epilogue.base_scales = static_cast<const uint16_t*>(weight.integer_base_scales.data());
    epilogue.amplifier_bits = weight.integer_amplifier_bits;
    epilogue.add = static_cast<const float*>(weight.epilogue.data());
    epilogue.y = static_cast<char*>(y.data) + r0 * y.row_stride * element;
    epilogue.y_stride = y.row_stride;
    epilogue.y_type = y.type == runtime::ScalarType::kFloat32 ? cuda::GemmElementType::kFloat32
                                                              : cuda::GemmElementType::kBf16;
    FF_RETURN_IF_ERROR(cuda::IntegerScaleEpilogue(epilogue, stream));
  }
  arena.Release(mark);
  return absl::OkStatus();
}

// Adds the fragment layout (and its configuration on `device`) to a W4A8 layer whose groups are a
// multiple of 128 and that is not Integer Scale; other layers keep none.
absl::Status AttachW4A8Fragments(CudaQuantizedLinearWeight& weight, int device) {
  if (weight.weight_bits != 4 || weight.group_size % 128 != 0 ||
      weight.integer_multipliers.bytes() > 0) {
    return absl::OkStatus();
  }
  const int64_t n = weight.out_features(), k = weight.padded_in;
  runtime::Allocator& allocator = runtime::cuda::DeviceAllocator(device);
  FF_ASSIGN_OR_RETURN(weight.fragment_words,
                      runtime::Buffer::Allocate(allocator, cuda::W4A8FragmentWordCount(n, k) * 4));
  FF_ASSIGN_OR_RETURN(
      weight.fragment_scales,
      runtime::Buffer::Allocate(allocator,
                                cuda::W4A8FragmentScaleWordCount(n, k, weight.group_size) * 4));
  FF_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  FF_RETURN_IF_ERROR(cuda::PackW4A8Fragments(
      {.n = n,
       .k = k,
       .group_size = weight.group_size,
       .words = static_cast<const uint32_t*>(weight.codes.data()),
       .scales = static_cast<const uint16_t*>(weight.scales.data()),
       .zero_points = weight.zero_points.bytes() > 0
                          ? static_cast<const int8_t*>(weight.zero_points.data())
                          : nullptr},
      static_cast<uint32_t*>(weight.fragment_words.data()),
      static_cast<uint32_t*>(weight.fragment_scales.data()), nullptr));
  FF_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(nullptr));
  int sm_count = 0;
  FF_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  weight.fragment_sm_count = sm_count;
  weight.fragment_split = cuda::ChooseW4A8FragmentConfig(1, n, k, weight.group_size, sm_count,
                                                         W4A8FragmentStagedAllowed(weight))
                              .split;
  return absl::OkStatus();
}

// FLATFLEET_KRONECKER_EXACT=1: FlatQuant layers keep the exact double transform everywhere.
bool KroneckerExactOnly() {
  static const bool exact = [] {
    const char* value = std::getenv("FLATFLEET_KRONECKER_EXACT");
    return value != nullptr && std::string_view(value) == "1";
  }();
  return exact;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaQuantizedLinearWeight>> UploadQuantizedLinear(
    const QuantizedLinearSource& source, int device) {
  if (source.weight == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer '", std::string(source.name), "': no quantized weight"));
  }
  const quant::QuantizedMatrix& w = *source.weight;
  if (absl::Status valid = w.Validate(); !valid.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer '", std::string(source.name), "': ", valid.message()));
  }
  const quant::QuantFormat& format = w.format;
  const bool per_channel = w.GroupSize() == w.cols;
  if (format.balanced) return Refuse(source.name, "a balanced (ABQ bit-balance) weight");
  if (format.bits == 8 && (!format.symmetric || !per_channel)) {
    return Refuse(source.name,
                  "an 8-bit weight that is asymmetric or grouped (W8A8 takes "
                  "symmetric per-channel weights)");
  }
  if (format.bits != 8 && format.bits != 4) {
    return Refuse(source.name, absl::StrCat("a ", format.bits, "-bit weight"));
  }
  if (!(source.activation_clip_ratio > 0.0f && source.activation_clip_ratio <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("layer '", std::string(source.name),
                                                   "': activation clip ratio ",
                                                   source.activation_clip_ratio));
  }
  if (!source.epilogue_add.empty() && static_cast<int64_t>(source.epilogue_add.size()) != w.rows) {
    return absl::InvalidArgumentError(absl::StrCat("layer '", std::string(source.name),
                                                   "': ", source.epilogue_add.size(),
                                                   " epilogue values for ", w.rows, " outputs"));
  }
  FF_RETURN_IF_ERROR(CheckActivationSide(source));
  if (source.integer_scaled != nullptr) {
    const quant::IntegerScaledWeight& scaled = *source.integer_scaled;
    const int64_t groups = w.GroupsPerRow();
    if (format.bits != 4 || per_channel) {
      return Refuse(source.name, "integer scales on a weight that is not 4-bit in groups");
    }
    if (static_cast<int64_t>(scaled.multipliers.size()) != w.rows * groups ||
        static_cast<int64_t>(scaled.base_scales.size()) != w.rows || scaled.amplifier_bits < 0 ||
        scaled.amplifier_bits > 30) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer '", std::string(source.name),
          "': integer scales do not match the weight (multipliers ", scaled.multipliers.size(),
          ", base scales ", scaled.base_scales.size(), ", amplifier ", scaled.amplifier_bits, ")"));
    }
  }
  const int64_t in_features = source.in_features == 0 ? w.cols : source.in_features;
  auto handle = std::make_unique<CudaQuantizedLinearWeight>(w.rows, in_features);
  handle->weight_bits = format.bits;
  handle->activation_clip_ratio = source.activation_clip_ratio;
  handle->activation_qmax = (1 << (source.activation_bits - 1)) - 1;
  handle->static_activation_scale = source.static_activation_scale;
  handle->gemm_in = w.cols;
  if (!source.input_sources.empty()) {
    FF_ASSIGN_OR_RETURN(
        handle->input_sources,
        UploadVector(std::vector<int32_t>(source.input_sources.begin(), source.input_sources.end()),
                     device));
  }
  if (source.rotation != nullptr) {
    const quant::RandomizedHadamard& rotation = *source.rotation;
    handle->hadamard_power_of_two = rotation.power_of_two();
    handle->hadamard_block_size = rotation.block_size();
    // The CPU's own expression (RandomizedHadamard::ApplyToRow), so the bits agree.
    handle->hadamard_norm = 1.0 / std::sqrt(static_cast<double>(rotation.power_of_two()));
    FF_ASSIGN_OR_RETURN(handle->hadamard_signs, UploadVector(rotation.signs(), device));
    FF_ASSIGN_OR_RETURN(handle->hadamard_block, UploadVector(rotation.block(), device));
  }
  if (source.kronecker.n1 != 0) {
    const QuantizedLinearSource::KroneckerFactors& factors = source.kronecker;
    handle->kronecker_n1 = factors.n1;
    handle->kronecker_n2 = factors.n2;
    handle->kronecker_fused =
        cuda::KroneckerRunsFused(factors.n1, factors.n2, handle->activation_qmax,
                                 source.static_activation_scale != 0, KroneckerExactOnly());
    FF_ASSIGN_OR_RETURN(
        handle->kronecker_scales,
        UploadVector(std::vector<float>(factors.scales.begin(), factors.scales.end()), device));
    FF_ASSIGN_OR_RETURN(
        handle->kronecker_p1,
        UploadVector(std::vector<float>(factors.p1.begin(), factors.p1.end()), device));
    FF_ASSIGN_OR_RETURN(
        handle->kronecker_p2,
        UploadVector(std::vector<float>(factors.p2.begin(), factors.p2.end()), device));
  }
  if (!source.input_divisors.empty()) {
    FF_ASSIGN_OR_RETURN(
        handle->input_divisors,
        UploadVector(std::vector<float>(source.input_divisors.begin(), source.input_divisors.end()),
                     device));
  }
  if (per_channel) {
    handle->padded_in = RoundUp(w.cols, kKMultiple);
    handle->group_size = handle->padded_in;
  } else {
    if (w.GroupSize() % kKMultiple != 0) {
      return Refuse(source.name, absl::StrCat("a weight in groups of ", w.GroupSize(),
                                              " (not a multiple of 32)"));
    }
    handle->padded_in = w.cols;  // a multiple of the group size, hence of 32
    handle->group_size = w.GroupSize();
  }
  if (handle->padded_in > kMaxK) {
    return absl::OutOfRangeError(absl::StrCat("layer '", std::string(source.name), "': ", w.cols,
                                              " inputs could overflow the int32 accumulation"));
  }
  const quant::QuantizedMatrix padded = PadColumns(w, handle->padded_in);
  if (format.bits == 8) {
    FF_ASSIGN_OR_RETURN(handle->codes, UploadVector(padded.codes, device));
  } else {
    FF_ASSIGN_OR_RETURN(quant::PackedInt4Matrix packed, quant::PackInt4Matrix(padded));
    handle->unsigned_nibbles = packed.signedness == quant::Signedness::kUnsigned;
    FF_ASSIGN_OR_RETURN(handle->codes, UploadVector(packed.words, device));
    if (!format.symmetric) {
      FF_ASSIGN_OR_RETURN(handle->zero_points, UploadVector(w.zero_points, device));
    }
  }
  FF_ASSIGN_OR_RETURN(handle->scales, UploadVector(w.scales, device));
  if (source.integer_scaled != nullptr) {
    FF_ASSIGN_OR_RETURN(handle->integer_multipliers,
                        UploadVector(source.integer_scaled->multipliers, device));
    FF_ASSIGN_OR_RETURN(handle->integer_base_scales,
                        UploadVector(source.integer_scaled->base_scales, device));
    handle->integer_amplifier_bits = source.integer_scaled->amplifier_bits;
  }
  std::vector<float> epilogue(w.rows, 0.0f);
  if (!source.epilogue_add.empty()) {
    std::copy(source.epilogue_add.begin(), source.epilogue_add.end(), epilogue.begin());
  }
  FF_ASSIGN_OR_RETURN(handle->epilogue, UploadVector(epilogue, device));
  FF_RETURN_IF_ERROR(AttachW4A8Fragments(*handle, device));
  return handle;
}

absl::StatusOr<std::unique_ptr<CudaQuantizedLinearWeight>> RandomQuantizedLinear(
    std::string_view name, int64_t out, int64_t in, uint64_t seed, float stddev,
    const RandomQuantizedFormat& format, int device) {
  if (out <= 0 || in <= 0 || !(stddev > 0.0f) || !std::isfinite(stddev)) {
    return absl::InvalidArgumentError(absl::StrCat("layer '", std::string(name), "': shape [", out,
                                                   ", ", in, "], stddev ", stddev));
  }
  if (format.weight_bits != 8 && format.weight_bits != 4) {
    return Refuse(name, absl::StrCat("a ", format.weight_bits, "-bit weight"));
  }
  auto handle = std::make_unique<CudaQuantizedLinearWeight>(out, in);
  handle->weight_bits = format.weight_bits;
  handle->gemm_in = in;
  const bool per_channel = format.group_size == 0 || format.group_size >= in ||
                           format.weight_bits == 8 || in % format.group_size != 0;
  if (!per_channel && format.group_size % kKMultiple != 0) {
    return Refuse(
        name, absl::StrCat("a weight in groups of ", format.group_size, " (not a multiple of 32)"));
  }
  handle->padded_in = per_channel ? RoundUp(in, kKMultiple) : in;
  handle->group_size = per_channel ? handle->padded_in : format.group_size;
  const int64_t groups = handle->padded_in / handle->group_size;
  runtime::Allocator& allocator = runtime::cuda::DeviceAllocator(device);
  const int64_t code_bytes = out * handle->padded_in * format.weight_bits / 8;
  FF_ASSIGN_OR_RETURN(handle->codes, runtime::Buffer::Allocate(allocator, code_bytes));
  FF_ASSIGN_OR_RETURN(handle->scales, runtime::Buffer::Allocate(allocator, out * groups * 2));
  FF_ASSIGN_OR_RETURN(handle->epilogue, runtime::Buffer::Allocate(allocator, out * 4));
  FF_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  const int64_t max_code = format.weight_bits == 8 ? 127 : 7;
  FF_RETURN_IF_ERROR(cuda::RandomFillCodes(
      {handle->codes.data(), format.weight_bits == 8 ? code_bytes : code_bytes / 4, seed,
       format.weight_bits},
      nullptr));
  FF_RETURN_IF_ERROR(cuda::RandomFillScales(
      {static_cast<uint16_t*>(handle->scales.data()), out * groups, seed ^ 0x5ca1e5ull,
       stddev * std::sqrt(3.0f) / static_cast<float>(max_code), 0.25f},
      nullptr));
  FF_CUDA_RETURN_IF_ERROR(cudaMemset(handle->epilogue.data(), 0, out * 4));
  FF_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  FF_RETURN_IF_ERROR(AttachW4A8Fragments(*handle, device));
  return handle;
}

int64_t QuantizedLinearOnCodesScratchBytes(const CudaQuantizedLinearWeight& weight, int64_t rows) {
  const int64_t align = runtime::WorkspaceArena::kAlignment;
  if (weight.integer_multipliers.bytes() > 0) {
    // One chunk's group sums and GemmW4A8's float32 output (RunIntegerScaleOnCodes).
    const int64_t chunk = IntegerScaleChunkRows(weight, rows);
    const int64_t groups = weight.padded_in / weight.group_size;
    return RoundUp(chunk * weight.out_features() * groups * 4, align) +
           RoundUp(chunk * weight.out_features() * 4, align);
  }
  const int64_t partials = UsesW4A8FragmentGemm(weight, rows)
                               ? RoundUp(cuda::W4A8FragmentPartialFloats(
                                             rows, weight.out_features(), weight.fragment_split) *
                                             4,
                                         align)
                               : 0;
  const int64_t wgmma_partials =
      UsesW4A8FragmentWgmma(weight, rows)
          ? RoundUp(cuda::W4A8FragmentWgmmaPartialFloats(
                        rows, weight.out_features(),
                        cuda::ChooseW4A8FragmentWgmmaSplit(rows, weight.out_features(),
                                                           weight.padded_in, weight.group_size,
                                                           weight.fragment_sm_count)) *
                        4,
                    align)
          : 0;
  return RoundUp(rows * weight.out_features() * 4, align) + partials + wgmma_partials;
}

bool UsesW4A8FragmentGemm(const CudaQuantizedLinearWeight& weight, int64_t rows) {
  return weight.fragment_words.bytes() > 0 && rows <= cuda::kW4A8FragmentMaxRows &&
         W4A8FragmentGemmEnabled() &&
         cuda::W4A8FragmentWins(rows, weight.out_features(), weight.padded_in,
                                W4A8FragmentStagedAllowed(weight));
}

bool W4A8FragmentStagedAllowed(const CudaQuantizedLinearWeight& weight) {
  return W4A8FragmentStagedEnabled() && cuda::Aligned16(weight.fragment_scales.data());
}

bool UsesW4A8FragmentWgmma(const CudaQuantizedLinearWeight& weight, int64_t rows) {
  return weight.fragment_words.bytes() > 0 && rows > cuda::kW4A8FragmentMaxRows &&
         W4A8FragmentWgmmaEnabled() && cuda::CurrentDeviceIsHopper() &&
         cuda::W4A8FragmentWgmmaApplies(weight.padded_in, weight.group_size,
                                        weight.zero_points.bytes() > 0) &&
         cuda::W4A8FragmentWgmmaWins(rows, weight.out_features(), weight.padded_in);
}

bool W4A8FragmentWgmmaEnabled() {
  static const bool enabled = [] {
    const char* value = std::getenv("FLATFLEET_W4A8_FRAGMENT_WGMMA");
    return value == nullptr || std::string_view(value) != "0";
  }();
  return enabled;
}

bool W4A8FragmentStagedEnabled() {
  static const bool enabled = [] {
    const char* value = std::getenv("FLATFLEET_W4A8_FRAGMENT_STAGED");
    return value == nullptr || std::string_view(value) != "0";
  }();
  return enabled;
}

bool W4A8FragmentGemmEnabled() {
  static const bool enabled = [] {
    const char* value = std::getenv("FLATFLEET_W4A8_FRAGMENT_GEMM");
    return value == nullptr || std::string_view(value) != "0";
  }();
  return enabled;
}

int64_t IntegerScaleChunkRows(const CudaQuantizedLinearWeight& weight, int64_t rows) {
  const int64_t groups = weight.padded_in / weight.group_size;
  const int64_t per_row = weight.out_features() * groups * 4;
  return std::clamp<int64_t>(std::min(rows, kIntegerScaleChunkBytes / per_row), 1, 65535);
}

int64_t QuantizedLinearScratchBytes(const CudaQuantizedLinearWeight& weight, int64_t rows) {
  const int64_t align = runtime::WorkspaceArena::kAlignment;
  const int64_t rotated = weight.transforms_rows() ? RoundUp(rows * weight.gemm_in * 4, align) : 0;
  return rotated + RoundUp(rows * weight.padded_in, align) + RoundUp(rows * 2, align) +
         QuantizedLinearOnCodesScratchBytes(weight, rows);
}

namespace {

// The activation side of a quantized linear: x's codes (codes_stride = padded_in) and FP16 scales,
// after the layer's online transform. Float32 transformed rows come from the arena (the caller
// releases them with the GEMM's scratch).
absl::Status QuantizeLayerInputs(const CudaQuantizedLinearWeight& weight,
                                 const runtime::ConstTensorView& x, int8_t* codes, uint16_t* scales,
                                 runtime::WorkspaceArena& arena, cudaStream_t stream) {
  const int64_t rows = x.rows;
  if (weight.kronecker_n1 > 0 && weight.kronecker_fused) {
    // Transform and quantize in one kernel on the tensor cores, straight to the GEMM's codes.
    cuda::DeviceKroneckerQuantize fused;
    fused.x = x.data;
    fused.type = cuda::ActivationType::kBfloat16;
    fused.rows = rows;
    fused.x_stride = x.row_stride;
    fused.n1 = weight.kronecker_n1;
    fused.n2 = weight.kronecker_n2;
    fused.divisors = static_cast<const float*>(weight.kronecker_scales.data());
    fused.p1 = static_cast<const float*>(weight.kronecker_p1.data());
    fused.p2 = static_cast<const float*>(weight.kronecker_p2.data());
    fused.clip_ratio = weight.activation_clip_ratio;
    fused.qmax = weight.activation_qmax;
    fused.codes = codes;
    fused.codes_stride = weight.padded_in;
    fused.scales = scales;
    return cuda::ApplyKroneckerQuantize(fused, stream);
  }
  cuda::DeviceActivationQuantization quantize;
  quantize.x = x.data;
  quantize.type = cuda::ActivationType::kBfloat16;
  quantize.rows = rows;
  quantize.cols = weight.gemm_in;
  quantize.x_stride = x.row_stride;
  if (weight.hadamard_power_of_two > 0) {
    // x Q into float32 scratch (the CPU rounds the rotated row to float32 too), then quantized.
    FF_ASSIGN_OR_RETURN(void* rotated, arena.TakeBytes(rows * weight.gemm_in * 4));
    cuda::DeviceHadamardRows rotate;
    rotate.x = x.data;
    rotate.type = cuda::ActivationType::kBfloat16;
    rotate.rows = rows;
    rotate.x_stride = x.row_stride;
    rotate.power_of_two = weight.hadamard_power_of_two;
    rotate.block_size = weight.hadamard_block_size;
    rotate.signs = static_cast<const double*>(weight.hadamard_signs.data());
    rotate.block = static_cast<const double*>(weight.hadamard_block.data());
    rotate.norm = weight.hadamard_norm;
    rotate.y = static_cast<float*>(rotated);
    rotate.y_stride = weight.gemm_in;
    FF_RETURN_IF_ERROR(cuda::ApplyHadamardRows(rotate, stream));
    quantize.x = rotated;
    quantize.type = cuda::ActivationType::kFloat32;
    quantize.x_stride = weight.gemm_in;
  }
  if (weight.kronecker_n1 > 0) {
    // (x / s) (P1 (x) P2) into float32 scratch (the CPU's transform rounds to float32 too).
    FF_ASSIGN_OR_RETURN(void* transformed, arena.TakeBytes(rows * weight.gemm_in * 4));
    cuda::DeviceKroneckerRows transform;
    transform.x = x.data;
    transform.type = cuda::ActivationType::kBfloat16;
    transform.rows = rows;
    transform.x_stride = x.row_stride;
    transform.n1 = weight.kronecker_n1;
    transform.n2 = weight.kronecker_n2;
    transform.divisors = static_cast<const float*>(weight.kronecker_scales.data());
    transform.p1 = static_cast<const float*>(weight.kronecker_p1.data());
    transform.p2 = static_cast<const float*>(weight.kronecker_p2.data());
    transform.y = static_cast<float*>(transformed);
    transform.y_stride = weight.gemm_in;
    FF_RETURN_IF_ERROR(cuda::ApplyKroneckerRows(transform, stream));
    quantize.x = transformed;
    quantize.type = cuda::ActivationType::kFloat32;
    quantize.x_stride = weight.gemm_in;
  }
  quantize.clip_ratio = weight.activation_clip_ratio;
  quantize.codes = codes;
  quantize.codes_stride = weight.padded_in;
  quantize.scales = scales;
  quantize.qmax = weight.activation_qmax;
  quantize.static_scale = weight.static_activation_scale;
  if (weight.input_sources.bytes() > 0) {
    quantize.channel_sources = static_cast<const int32_t*>(weight.input_sources.data());
    quantize.x_cols = x.cols;
  }
  if (weight.input_divisors.bytes() > 0) {
    quantize.channel_divisors = static_cast<const float*>(weight.input_divisors.data());
  }
  return cuda::QuantizeActivationsInt8(quantize, stream);
}

}  // namespace

absl::Status RunQuantizedLinear(const CudaQuantizedLinearWeight& weight,
                                const runtime::ConstTensorView& x, const runtime::TensorView& y,
                                runtime::WorkspaceArena& arena, cudaStream_t stream,
                                cuda::CublasLtInt8Gemm* int8_gemm, SplitCounters split_counters) {
  const int64_t rows = x.rows;
  if (x.cols != weight.in_features() || x.row_stride < x.cols) {
    return absl::InvalidArgumentError(absl::StrCat("quantized linear: x is ", x.rows, " x ", x.cols,
                                                   " (row stride ", x.row_stride, ") for ",
                                                   weight.in_features(), " inputs"));
  }
  const runtime::WorkspaceArena::Mark mark = arena.mark();
  FF_ASSIGN_OR_RETURN(void* codes, arena.TakeBytes(rows * weight.padded_in));
  FF_ASSIGN_OR_RETURN(void* scales, arena.TakeBytes(rows * 2));
  FF_RETURN_IF_ERROR(QuantizeLayerInputs(weight, x, static_cast<int8_t*>(codes),
                                         static_cast<uint16_t*>(scales), arena, stream));
  FF_RETURN_IF_ERROR(RunQuantizedLinearOnCodes(weight, rows, static_cast<const int8_t*>(codes),
                                               static_cast<const uint16_t*>(scales), y, arena,
                                               stream, int8_gemm, split_counters));
  arena.Release(mark);
  return absl::OkStatus();
}

absl::Status RunQuantizedLinearOnCodes(const CudaQuantizedLinearWeight& weight, int64_t rows,
                                       const int8_t* codes, const uint16_t* scales,
                                       const runtime::TensorView& y, runtime::WorkspaceArena& arena,
                                       cudaStream_t stream, cuda::CublasLtInt8Gemm* int8_gemm,
                                       SplitCounters split_counters) {
  if (weight.integer_multipliers.bytes() > 0) {
    return RunIntegerScaleOnCodes(weight, rows, codes, scales, y, arena, stream);
  }
  if (rows != y.rows || weight.out_features() != y.cols) {
    return absl::InvalidArgumentError(absl::StrCat("quantized linear: y is ", y.rows, " x ", y.cols,
                                                   ", expected ", rows, " x ",
                                                   weight.out_features()));
  }
  const int64_t out = weight.out_features();
  const runtime::WorkspaceArena::Mark mark = arena.mark();
  FF_ASSIGN_OR_RETURN(void* sums, arena.TakeBytes(rows * out * 4));
  const cuda::GemmElementType y_type = y.type == runtime::ScalarType::kFloat32
                                           ? cuda::GemmElementType::kFloat32
                                           : cuda::GemmElementType::kBf16;
  if (UsesW4A8FragmentGemm(weight, rows) && split_counters.data != nullptr &&
      split_counters.count >= cuda::W4A8FragmentCounterCount(out)) {
    // Decode and small batches: the fragment GEMM, K split over CTAs as chosen at load.
    auto gemm =
        W4A8FragmentOperands<cuda::DeviceW4A8FragmentGemm>(weight, rows, codes, scales, y, y_type);
    // Symmetric layers (signed nibbles, no zero points) take the kernel's shorter unpack.
    gemm.w_has_zero_points = weight.zero_points.bytes() > 0 || weight.unsigned_nibbles;
    // The rule's configuration for the layer's SM count: the split is the layer's (m does not
    // enter it); blocks, ring depth and weight stages follow m.
    gemm.config = {.split = 0};
    gemm.sm_count = weight.fragment_sm_count;
    gemm.config = cuda::ResolveW4A8FragmentConfig(gemm, W4A8FragmentStagedAllowed(weight));
    const int64_t partial_floats = cuda::W4A8FragmentPartialFloats(rows, out, gemm.config.split);
    if (partial_floats > 0) {
      FF_ASSIGN_OR_RETURN(void* partials, arena.TakeBytes(partial_floats * 4));
      gemm.split_partials = static_cast<float*>(partials);
    }
    gemm.split_counters = split_counters.data;
    FF_RETURN_IF_ERROR(cuda::GemmW4A8Fragment(gemm, stream));
    arena.Release(mark);
    return absl::OkStatus();
  }
  if (UsesW4A8FragmentWgmma(weight, rows)) {
    // Batched decode and prefill (33 rows on): wgmma over the same fragment layout.
    auto gemm = W4A8FragmentOperands<cuda::DeviceW4A8FragmentWgmmaGemm>(weight, rows, codes, scales,
                                                                        y, y_type);
    gemm.w_has_zero_points = weight.zero_points.bytes() > 0;
    // Few tiles (batched decode on narrow layers): K split over CTAs, with the context's counters.
    gemm.split = cuda::ChooseW4A8FragmentWgmmaSplit(rows, out, weight.padded_in, weight.group_size,
                                                    weight.fragment_sm_count);
    if (gemm.split > 1 && (split_counters.data == nullptr ||
                           split_counters.count < cuda::W4A8FragmentWgmmaCounterCount(rows, out))) {
      gemm.split = 1;
    }
    if (gemm.split > 1) {
      FF_ASSIGN_OR_RETURN(
          void* partials,
          arena.TakeBytes(cuda::W4A8FragmentWgmmaPartialFloats(rows, out, gemm.split) * 4));
      gemm.split_partials = static_cast<float*>(partials);
      gemm.split_counters = split_counters.data;
    }
    FF_RETURN_IF_ERROR(cuda::GemmW4A8FragmentWgmma(gemm, stream));
    arena.Release(mark);
    return absl::OkStatus();
  }
  if (weight.weight_bits == 4 && rows <= kDecodeGemmMaxRows) {
    // Decode: the weight-streaming W4A8 kernel with the epilogue fused (no float32 pass); kAuto
    // takes the split-K kernel on narrow layers (no workspace: nothing more to take above).
    auto gemm = W4A8Operands<cuda::DeviceW4A8DecodeGemm>(weight, rows, codes, scales);
    gemm.kernel = cuda::W4A8DecodeKernel::kAuto;
    gemm.epilogue_add = static_cast<const float*>(weight.epilogue.data());
    gemm.y = y.data;
    gemm.y_stride = y.row_stride;
    gemm.y_type = y_type;
    FF_RETURN_IF_ERROR(cuda::GemmW4A8Decode(gemm, stream));
    arena.Release(mark);
    return absl::OkStatus();
  }
  if (weight.weight_bits == 8 && int8_gemm != nullptr && rows > kCublasInt8MinRows) {
    const absl::Status imma = int8_gemm->Run({.m = rows,
                                              .n = out,
                                              .k = weight.padded_in,
                                              .x = static_cast<const int8_t*>(codes),
                                              .w = static_cast<const int8_t*>(weight.codes.data()),
                                              .sums = static_cast<int32_t*>(sums)},
                                             stream);
    if (imma.ok()) {
      cuda::DeviceInt8DequantEpilogue epilogue;
      epilogue.rows = rows;
      epilogue.cols = out;
      epilogue.sums = static_cast<const int32_t*>(sums);
      epilogue.x_scales = static_cast<const uint16_t*>(scales);
      epilogue.w_scales = static_cast<const uint16_t*>(weight.scales.data());
      epilogue.add = static_cast<const float*>(weight.epilogue.data());
      epilogue.y = y.data;
      epilogue.y_stride = y.row_stride;
      epilogue.y_type = y_type;
      FF_RETURN_IF_ERROR(cuda::Int8DequantEpilogue(epilogue, stream));
      arena.Release(mark);
      return absl::OkStatus();
    }
    // No IMMA algorithm for this shape: the mma.sync kernel below computes the same bits.
    if (imma.code() != absl::StatusCode::kUnimplemented) return imma;
  }
  if (weight.weight_bits == 4 && rows >= cuda::kW4A8MidmMinRows && rows <= cuda::kW4A8MidmMaxRows) {
    // 17..256 rows (batched decode, short prefill chunks): the weight-bandwidth W4A8 GEMM with
    // 64-row tiles and the epilogue fused; kAuto picks the tile (w4a8_midm_gemm.h's table).
    auto gemm = W4A8Operands<cuda::DeviceW4A8MidmGemm>(weight, rows, codes, scales);
    gemm.kernel = cuda::W4A8MidmKernel::kAuto;
    gemm.epilogue_add = static_cast<const float*>(weight.epilogue.data());
    gemm.y = y.data;
    gemm.y_stride = y.row_stride;
    gemm.y_type = y_type;
    FF_RETURN_IF_ERROR(cuda::GemmW4A8Midm(gemm, stream));
    arena.Release(mark);
    return absl::OkStatus();
  }
  if (weight.weight_bits == 4 && rows >= cuda::kW4A8PrefillMinRows) {
    // Prefill (257 rows on): the 128 x 128-tile W4A8 GEMM with the epilogue fused (the same bits
    // as GemmW4A8 + AddBias below, without the float32 pass).
    auto gemm = W4A8Operands<cuda::DeviceW4A8PrefillGemm>(weight, rows, codes, scales);
    gemm.epilogue_add = static_cast<const float*>(weight.epilogue.data());
    gemm.y = y.data;
    gemm.y_stride = y.row_stride;
    gemm.y_type = y_type;
    FF_RETURN_IF_ERROR(cuda::GemmW4A8Prefill(gemm, stream));
    arena.Release(mark);
    return absl::OkStatus();
  }
  if (weight.weight_bits == 8) {
    cuda::DeviceW8A8Gemm gemm;
    gemm.m = rows;
    gemm.n = out;
    gemm.k = weight.padded_in;
    gemm.x_codes = static_cast<const int8_t*>(codes);
    gemm.x_scales = static_cast<const uint16_t*>(scales);
    gemm.w_codes = static_cast<const int8_t*>(weight.codes.data());
    gemm.w_scales = static_cast<const uint16_t*>(weight.scales.data());
    gemm.y = static_cast<float*>(sums);
    FF_RETURN_IF_ERROR(cuda::GemmW8A8(gemm, stream));
  } else {
    auto gemm = W4A8Operands<cuda::DeviceW4A8Gemm>(weight, rows, codes, scales);
    gemm.y = static_cast<float*>(sums);
    FF_RETURN_IF_ERROR(cuda::GemmW4A8(gemm, stream));
  }
  cuda::DeviceBiasAdd epilogue;
  epilogue.rows = rows;
  epilogue.cols = out;
  epilogue.x = static_cast<const float*>(sums);
  epilogue.bias = weight.epilogue.data();
  epilogue.bias_type = cuda::GemmElementType::kFloat32;
  epilogue.y = y.data;
  epilogue.y_stride = y.row_stride;
  epilogue.y_type = y_type;
  FF_RETURN_IF_ERROR(cuda::AddBias(epilogue, stream));
  arena.Release(mark);
  return absl::OkStatus();
}

}  // namespace flatfleet::kernels::cuda_backend
