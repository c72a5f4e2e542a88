// Quantized linear layers on the CUDA backend (kernels::QuantizedLinearSource): the bf16 input is
// quantized on the device (int8_activation_quantizer.h: per token or with a static scale, codes of
// 2..8 bits in int8, after SmoothQuant's / FlattenQuant's gather and division or the randomized
// Hadamard rotation (hadamard_transform.h) or FlatQuant's Kronecker transform
// (kronecker_transform.h) where the layer has one), then the integer GEMM by row
// count (each bit-exact with the CPU reference, so the choice never changes a result):
//   * W4A8 up to kDecodeGemmMaxRows: the weight-streaming decode GEMM with the epilogue (bias
//     plus output correction, one rounding to the output type) fused; kAuto runs the streaming
//     kernel where it can, else splits K over the warps of a CTA on narrow layers
//     (ChooseW4A8DecodeAutoKernel, w4a8_decode_gemm.h). Both exchange their int32 sums through
//     shared memory, so they take no scratch. (The W8A8 decode GEMM
//     measured slower than the mma.sync kernel on every real shape, so W8A8 decode keeps that.)
//   * otherwise the mma.sync W8A8 / W4A8 GEMMs (kernels/cuda/int8_gemm.h) into float32 op
//     scratch, then the epilogue kernel (kernels/cuda/bias_add.h);
//   * W8A8 above kCublasInt8MinRows: cuBLASLt's exact int32 sums and a dequantising epilogue;
//   * W4A8 at cuda::kW4A8MidmMinRows..kW4A8MidmMaxRows (17..256) rows: the weight-bandwidth
//     mid-M GEMM (kernels/cuda/w4a8_midm_gemm.h, 64-row tiles, kAuto's tile table there) with
//     the epilogue fused;
//   * W4A8 from 257 rows: the 128 x 128-tile prefill GEMM (kernels/cuda/w4a8_prefill_gemm.h)
//     with the epilogue fused (no float32 pass).
//
// Layout at load: 8-bit codes stay row-major int8 [out, K]; 4-bit codes are repacked into the
// interleaved INT4 words the GEMM reads (kernels/cpu/quant/int4_interleaved.h). K is the layer's
// width rounded up to a multiple of 32 with zero codes (the activation quantizer writes zeros
// there too): zero codes add nothing to any integer sum, so a padded layer computes exactly what
// the stored one does. Weights grouped by a size that is not a multiple of 32 have no kernel.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cuda/int8_cublaslt_gemm.h"
#include "kernels/cuda/w4a8_fragment_gemm.h"
#include "kernels/cuda/w4a8_fragment_wgmma_gemm.h"
#include "runtime/buffer.h"
#include "runtime/tensor_view.h"
#include "runtime/workspace_arena.h"

namespace flatfleet::kernels::cuda_backend {

class CudaQuantizedLinearWeight final : public LinearWeight {
 public:
  CudaQuantizedLinearWeight(int64_t out, int64_t in) : LinearWeight(out, in) {}

  int weight_bits = 8;            // 8 (W8A8) or 4 (W4A8)
  int64_t padded_in = 0;          // the GEMM's K: in_features() rounded up to a multiple of 32
  int64_t group_size = 0;         // of the GEMM (padded_in when per output channel)
  bool unsigned_nibbles = false;  // asymmetric 4-bit: nibbles hold code + 8
  float activation_clip_ratio = 1.0f;
  // The activation side (int8_activation_quantizer.h): codes up to activation_qmax (127 for A8,
  // 7 for W4A4), a static per-tensor FP16 scale or 0 (per token), and the optional column gather
  // and divisors of SmoothQuant / FlattenQuant over the gemm_in transformed inputs (gemm_in >
  // in_features() where FlattenQuant split channels).
  int activation_qmax = 127;
  uint16_t static_activation_scale = 0;
  int64_t gemm_in = 0;
  runtime::Buffer input_sources;   // int32 [gemm_in] or empty
  runtime::Buffer input_divisors;  // float32 [gemm_in] or empty
  // The online randomized Hadamard rotation of x before quantizing (hadamard_transform.h), of
  // size gemm_in = hadamard_power_of_two * hadamard_block_size; none when hadamard_power_of_two
  // is 0. The rotated rows pass through float32 op scratch.
  int64_t hadamard_power_of_two = 0;
  int64_t hadamard_block_size = 1;
  double hadamard_norm = 1.0;
  runtime::Buffer hadamard_signs;  // double [gemm_in]
  runtime::Buffer hadamard_block;  // double [block_size^2]
  // FlatQuant's online transform (kronecker_transform.h): (x / s) (P1 (x) P2), gemm_in =
  // kronecker_n1 * kronecker_n2; none when kronecker_n1 is 0. Rows pass through float32 scratch.
  int64_t kronecker_n1 = 0;
  int64_t kronecker_n2 = 0;
  // Whether the transform runs fused with the quantizer on the TF32 tensor cores
  // (kronecker_quantize.h: codes within its stated bound of the exact transform's) instead of the
  // exact double kernel. Chosen at load where the factor orders allow it, unless
  // FLATFLEET_KRONECKER_EXACT=1; tests may clear it to compare bit for bit with the CPU.
  bool kronecker_fused = false;
  runtime::Buffer kronecker_scales;  // float32 [gemm_in]
  runtime::Buffer kronecker_p1;      // float32 [n1 * n1]
  runtime::Buffer kronecker_p2;      // float32 [n2 * n2]
  // Integer Scale (W4A8 groups): the GEMM's exact group sums folded in int32 with these
  // multipliers, then one float scale per output (integer_scale_epilogue.h); none when
  // integer_multipliers is empty. `scales` stays the float group scales (unused then).
  runtime::Buffer integer_multipliers;  // int32 [out, groups]
  runtime::Buffer integer_base_scales;  // FP16 bits [out]
  int integer_amplifier_bits = 0;
  runtime::Buffer codes;        // int8 [out, padded_in] or uint32 [out, padded_in / 8]
  runtime::Buffer scales;       // FP16 bits [out, padded_in / group_size]
  runtime::Buffer zero_points;  // int8 [out, groups] (asymmetric 4-bit) or empty
  runtime::Buffer epilogue;     // float32 [out]: bias + output correction (zeros when neither)
  // W4A8 layers with groups of a multiple of 128 (not Integer Scale): the codes, scales and zero
  // points again in the fragment layout (kernels/cuda/w4a8_fragment_layout.h) that the decode /
  // small-batch GEMM streams (up to cuda::kW4A8FragmentMaxRows rows), the SM count its rule is
  // applied with and the split it gives (the split fixes the float summation order and does not
  // depend on m, so a row's result never depends on the batch). Empty otherwise.
  runtime::Buffer fragment_words;
  runtime::Buffer fragment_scales;
  int fragment_sm_count = 0;
  int fragment_split = 1;

  int64_t device_bytes() const {
    return static_cast<int64_t>(
        codes.bytes() + scales.bytes() + zero_points.bytes() + epilogue.bytes() +
        input_sources.bytes() + input_divisors.bytes() + hadamard_signs.bytes() +
        hadamard_block.bytes() + kronecker_scales.bytes() + kronecker_p1.bytes() +
        kronecker_p2.bytes() + integer_multipliers.bytes() + integer_base_scales.bytes() +
        fragment_words.bytes() + fragment_scales.bytes());
  }
  // Whether the activations are the plain per-token INT8 codes of x itself, which is what
  // RunQuantizedLinearOnCodes' other producers (add_rmsnorm_quantize.h) write.
  bool plain_int8_activations() const {
    return activation_qmax == 127 && static_activation_scale == 0 && input_sources.bytes() == 0 &&
           input_divisors.bytes() == 0 && hadamard_power_of_two == 0 && kronecker_n1 == 0;
  }
  // Whether x passes through a float32 transform row (Hadamard, or Kronecker on the exact path)
  // before quantizing.
  bool transforms_rows() const {
    return hadamard_power_of_two > 0 || (kronecker_n1 > 0 && !kronecker_fused);
  }
};

// Validates the stored layer (errors name it and say which formats have a CUDA kernel), repacks
// and uploads it to `device`.
absl::StatusOr<std::unique_ptr<CudaQuantizedLinearWeight>> UploadQuantizedLinear(
    const QuantizedLinearSource& source, int device);

// A seeded random symmetric layer generated on `device` (no host copy): codes uniform over the
// format's range, FP16 scales around stddev * sqrt(3) / max_code, so the dequantized weight has
// the float random layer's spread.
absl::StatusOr<std::unique_ptr<CudaQuantizedLinearWeight>> RandomQuantizedLinear(
    std::string_view name, int64_t out, int64_t in, uint64_t seed, float stddev,
    const RandomQuantizedFormat& format, int device);

// Rows per chunk of an Integer Scale layer: its [rows, out, groups] int32 group sums are kept
// within kIntegerScaleChunkBytes (at least one row, at most 65535).
inline constexpr int64_t kIntegerScaleChunkBytes = int64_t{64} << 20;
int64_t IntegerScaleChunkRows(const CudaQuantizedLinearWeight& weight, int64_t rows);

// Scratch bytes RunQuantizedLinear takes from the arena for `rows` rows.
int64_t QuantizedLinearScratchBytes(const CudaQuantizedLinearWeight& weight, int64_t rows);

// Up to this many rows (decode) a W4A8 layer runs the weight-streaming decode GEMM with the
// epilogue fused (w4a8_decode_gemm.h); more rows take the mma.sync kernel.
inline constexpr int64_t kDecodeGemmMaxRows = 16;
// Above this many rows (prefill; never a captured decode step) a W8A8 layer's exact int32 sums
// come from cuBLASLt's IMMA kernels (int8_cublaslt_gemm.h) and the float epilogue from
// int8_dequant_epilogue.h: the same bits as the mma.sync kernel, several times faster.
inline constexpr int64_t kCublasInt8MinRows = 256;

// The zeroed int32 counters (one per tile, every call leaves them zero) with which the W4A8
// fragment GEMM's CTAs find the last of a tile's splits. One set per stream: two streams running
// at once must not share it. Without them (null) W4A8 decode takes the earlier kernels.
struct SplitCounters {
  int32_t* data = nullptr;
  int64_t count = 0;
};
// Counters an execution context holds: enough for layers of up to 4M output channels.
inline constexpr int64_t kSplitCounterCapacity = 65536;

// Whether W4A8 layers of up to cuda::kW4A8FragmentMaxRows rows run the fragment GEMM (the
// default), or, with FLATFLEET_W4A8_FRAGMENT_GEMM=0 in the environment (read once), the earlier
// decode (w4a8_decode_gemm.h) and mid-M kernels: the A/B switch of the benchmarks.
bool W4A8FragmentGemmEnabled();
// Whether the fragment GEMM may take its shared-memory weight stages where its rule does (the
// default), or, with FLATFLEET_W4A8_FRAGMENT_STAGED=0, keeps the register ring (same results).
bool W4A8FragmentStagedEnabled();
// The switch and the layer's fragment scales 16-byte aligned (the bulk copies'): the fragment
// GEMM's staged rule (split, configuration and where it wins) for this layer, else the ring's.
// Fixed per layer, so its split never depends on the rows.
bool W4A8FragmentStagedAllowed(const CudaQuantizedLinearWeight& weight);
// Whether RunQuantizedLinearOnCodes runs the fragment GEMM for `rows` rows of this layer (given
// counters): it has the layout, rows <= cuda::kW4A8FragmentMaxRows, the switch is on and
// cuda::W4A8FragmentWins(rows, out, padded_in, W4A8FragmentStagedAllowed). Else the earlier W4A8
// kernels (bit-exact with the reference).
bool UsesW4A8FragmentGemm(const CudaQuantizedLinearWeight& weight, int64_t rows);

// Whether W4A8 layers of more than cuda::kW4A8FragmentMaxRows rows run the fragment wgmma GEMM
// (the default), or, with FLATFLEET_W4A8_FRAGMENT_WGMMA=0 in the environment (read once), the
// earlier mid-M and prefill kernels: the A/B switch of the benchmarks.
bool W4A8FragmentWgmmaEnabled();
// Whether RunQuantizedLinearOnCodes runs the fragment wgmma GEMM for `rows` rows of this layer:
// it has the fragment layout, rows > cuda::kW4A8FragmentMaxRows, the switch is on, the device is
// a Hopper, cuda::W4A8FragmentWgmmaApplies to the layer and cuda::W4A8FragmentWgmmaWins for the
// rows. Bit-exact with the reference, as the kernels it replaces.
bool UsesW4A8FragmentWgmma(const CudaQuantizedLinearWeight& weight, int64_t rows);

// y[rows, out] (bf16 or float32, any row stride) = the layer applied to x[rows, in] (bf16 device,
// any row stride), on `stream`. `int8_gemm` (optional) serves W8A8 prefill as said above. The
// scratch is released to the arena before returning (the next op's kernels run after these on
// the same stream).
absl::Status RunQuantizedLinear(const CudaQuantizedLinearWeight& weight,
                                const runtime::ConstTensorView& x, const runtime::TensorView& y,
                                runtime::WorkspaceArena& arena, cudaStream_t stream,
                                cuda::CublasLtInt8Gemm* int8_gemm = nullptr,
                                SplitCounters split_counters = {});

// The GEMM half of RunQuantizedLinear, for INT8 activations quantized elsewhere: codes
// [rows, weight.padded_in] (zeros past gemm_in) and FP16 scales [rows], as
// QuantizeActivationsInt8 writes them with codes_stride = padded_in and the layer's activation
// settings above -- or, for plain_int8_activations() layers only, the fused add + RMSNorm +
// quantize kernel (kernels/cuda/add_rmsnorm_quantize.h) with clip_ratio = activation_clip_ratio
// and codes_stride = padded_in, which saves the norm's bf16
// output and the quantizer's pass over it. The same bits as RunQuantizedLinear on the bf16 x
// those codes quantize. Takes QuantizedLinearOnCodesScratchBytes from the arena (released
// before returning).
absl::Status RunQuantizedLinearOnCodes(const CudaQuantizedLinearWeight& weight, int64_t rows,
                                       const int8_t* codes, const uint16_t* scales,
                                       const runtime::TensorView& y, runtime::WorkspaceArena& arena,
                                       cudaStream_t stream,
                                       cuda::CublasLtInt8Gemm* int8_gemm = nullptr,
                                       SplitCounters split_counters = {});
int64_t QuantizedLinearOnCodesScratchBytes(const CudaQuantizedLinearWeight& weight, int64_t rows);

}  // namespace flatfleet::kernels::cuda_backend
