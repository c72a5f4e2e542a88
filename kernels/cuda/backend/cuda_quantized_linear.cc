#include "kernels/cuda/backend/cuda_quantized_linear.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu/quant/packed_int4_matrix.h"
#include "kernels/cpu/quant/quantized_matrix.h"
#include "kernels/cuda/bias_add.h"
#include "kernels/cuda/int8_activation_quantizer.h"
#include "kernels/cuda/int8_dequant_epilogue.h"
#include "kernels/cuda/int8_gemm.h"
#include "kernels/cuda/random_fill.h"
#include "kernels/cuda/w4a8_decode_gemm.h"
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
  auto handle = std::make_unique<CudaQuantizedLinearWeight>(w.rows, w.cols);
  handle->weight_bits = format.bits;
  handle->activation_clip_ratio = source.activation_clip_ratio;
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
  std::vector<float> epilogue(w.rows, 0.0f);
  if (!source.epilogue_add.empty()) {
    std::copy(source.epilogue_add.begin(), source.epilogue_add.end(), epilogue.begin());
  }
  FF_ASSIGN_OR_RETURN(handle->epilogue, UploadVector(epilogue, device));
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
  return handle;
}

int64_t QuantizedLinearOnCodesScratchBytes(const CudaQuantizedLinearWeight& weight, int64_t rows) {
  return RoundUp(rows * weight.out_features() * 4, runtime::WorkspaceArena::kAlignment);
}

int64_t QuantizedLinearScratchBytes(const CudaQuantizedLinearWeight& weight, int64_t rows) {
  const int64_t align = runtime::WorkspaceArena::kAlignment;
  return RoundUp(rows * weight.padded_in, align) + RoundUp(rows * 2, align) +
         QuantizedLinearOnCodesScratchBytes(weight, rows);
}

absl::Status RunQuantizedLinear(const CudaQuantizedLinearWeight& weight,
                                const runtime::ConstTensorView& x, const runtime::TensorView& y,
                                runtime::WorkspaceArena& arena, cudaStream_t stream,
                                cuda::CublasLtInt8Gemm* int8_gemm) {
  const int64_t rows = x.rows;
  const runtime::WorkspaceArena::Mark mark = arena.mark();
  FF_ASSIGN_OR_RETURN(void* codes, arena.TakeBytes(rows * weight.padded_in));
  FF_ASSIGN_OR_RETURN(void* scales, arena.TakeBytes(rows * 2));
  cuda::DeviceActivationQuantization quantize;
  quantize.x = x.data;
  quantize.type = cuda::ActivationType::kBfloat16;
  quantize.rows = rows;
  quantize.cols = x.cols;
  quantize.x_stride = x.row_stride;
  quantize.clip_ratio = weight.activation_clip_ratio;
  quantize.codes = static_cast<int8_t*>(codes);
  quantize.codes_stride = weight.padded_in;
  quantize.scales = static_cast<uint16_t*>(scales);
  FF_RETURN_IF_ERROR(cuda::QuantizeActivationsInt8(quantize, stream));
  FF_RETURN_IF_ERROR(RunQuantizedLinearOnCodes(weight, rows, static_cast<const int8_t*>(codes),
                                               static_cast<const uint16_t*>(scales), y, arena,
                                               stream, int8_gemm));
  arena.Release(mark);
  return absl::OkStatus();
}

absl::Status RunQuantizedLinearOnCodes(const CudaQuantizedLinearWeight& weight, int64_t rows,
                                       const int8_t* codes, const uint16_t* scales,
                                       const runtime::TensorView& y, runtime::WorkspaceArena& arena,
                                       cudaStream_t stream, cuda::CublasLtInt8Gemm* int8_gemm) {
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
