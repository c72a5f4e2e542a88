#include <cstdint>

#include "kernels/cuda/int8_block_all_reduce.h"

namespace flatfleet::cuda {
namespace {

// One warp per quantization block: the block's absmax is a warp reduction, with no shared memory
// and no synchronisation between warps. Eight warps per thread block.
constexpr int kWarpsPerCta = 8;
constexpr unsigned kFullMask = 0xffffffffu;

struct BlockView {
  int64_t block;   // global block index
  int64_t begin;   // first element
  int32_t length;  // elements in this block (the last one may be short)
};

__device__ BlockView ViewOfBlock(const Int8ChunkLayout& layout, int64_t block) {
  const int64_t begin = block * layout.block_size;
  const int64_t end = min(begin + layout.block_size, layout.num_elements);
  return {block, begin, static_cast<int32_t>(end - begin)};
}

__device__ int8_t* SlotCodes(uint8_t* slots, const Int8ChunkLayout& layout, int64_t slot,
                             int64_t block_in_chunk) {
  return reinterpret_cast<int8_t*>(slots + slot * layout.slot_bytes +
                                   block_in_chunk * layout.block_size);
}
__device__ const int8_t* SlotCodes(const uint8_t* slots, const Int8ChunkLayout& layout,
                                   int64_t slot, int64_t block_in_chunk) {
  return reinterpret_cast<const int8_t*>(slots + slot * layout.slot_bytes +
                                         block_in_chunk * layout.block_size);
}
__device__ float* SlotScale(uint8_t* slots, const Int8ChunkLayout& layout, int64_t slot,
                            int64_t block_in_chunk) {
  return reinterpret_cast<float*>(slots + slot * layout.slot_bytes + layout.scales_offset) +
         block_in_chunk;
}
__device__ float SlotScaleValue(const uint8_t* slots, const Int8ChunkLayout& layout, int64_t slot,
                                int64_t block_in_chunk) {
  return reinterpret_cast<const float*>(slots + slot * layout.slot_bytes +
                                        layout.scales_offset)[block_in_chunk];
}

__device__ float WarpMax(float value) {
  for (int offset = 16; offset > 0; offset /= 2)
    value = fmaxf(value, __shfl_xor_sync(kFullMask, value, offset));
  return value;
}

// Calls visit(i, count) for the elements [0, length) of a block in per-lane pieces: with `vec4`,
// aligned quads (count 4) first, then the remaining elements one by one (count 1).
template <typename Visit>
__device__ void ForEachPiece(int32_t length, bool vec4, int lane, Visit&& visit) {
  int32_t scalar_begin = 0;
  if (vec4) {
    for (int32_t i = 4 * lane; i + 4 <= length; i += 128) visit(i, 4);
    scalar_begin = length & ~3;
  }
  for (int32_t i = scalar_begin + lane; i < length; i += 32) visit(i, 1);
}

// The CPU's rule (int8_blocks.cc): scale = absmax / 127 in float, one IEEE division.
__device__ float ScaleOf(float absmax) { return __fdiv_rn(absmax, 127.0f); }

// clamp(nearbyint(x / scale), -127, 127): __float2int_rn rounds half to even like nearbyint in the
// default rounding mode; |x / scale| <= 127 (+ rounding), so the int never overflows.
__device__ int8_t CodeOf(float x, float scale) {
  const int code = __float2int_rn(__fdiv_rn(x, scale));
  return static_cast<int8_t>(max(-127, min(127, code)));
}

__device__ float Dequantized(int8_t code, float scale) {
  return __fmul_rn(__int2float_rn(code), scale);
}

__device__ void Raise(int32_t* status, int word) {
  if (status != nullptr) *reinterpret_cast<volatile int32_t*>(status + word) = 1;
}

__global__ void QuantizeIntoSlotsKernel(const float* __restrict__ x, Int8ChunkLayout layout,
                                        bool vec4, uint8_t* __restrict__ slots, int32_t* status) {
  const int64_t block = static_cast<int64_t>(blockIdx.x) * kWarpsPerCta + threadIdx.x / 32;
  if (block >= layout.num_blocks) return;
  const int lane = threadIdx.x % 32;
  const BlockView view = ViewOfBlock(layout, block);
  const float* values = x + view.begin;

  float absmax = 0.0f;
  bool finite = true;
  ForEachPiece(view.length, vec4, lane, [&](int32_t i, int count) {
    float v[4];
    if (count == 4) {
      const float4 q = *reinterpret_cast<const float4*>(values + i);
      v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
    } else {
      v[0] = values[i];
    }
    for (int k = 0; k < count; ++k) {
      absmax = fmaxf(absmax, fabsf(v[k]));
      finite &= isfinite(v[k]);
    }
  });
  absmax = WarpMax(absmax);
  finite = __all_sync(kFullMask, finite);

  const int64_t owner = Int8ChunkOwner(layout, block);
  const int64_t in_chunk = block - Int8ChunkBegin(layout, owner);
  int8_t* codes = SlotCodes(slots, layout, owner, in_chunk);
  // A non-finite block travels as scale NaN with zero codes: the reduced block becomes NaN on
  // every rank, so all ranks report the error instead of one rank dropping out.
  const float scale = finite ? ScaleOf(absmax) : __int_as_float(0x7fc00000);
  if (lane == 0) {
    *SlotScale(slots, layout, owner, in_chunk) = scale;
    if (!finite) Raise(status, kStatusNonFiniteInput);
  }
  const bool zero = !finite || scale == 0.0f;  // all zeros (or absmax below 127 * denorm_min)
  ForEachPiece(view.length, vec4, lane, [&](int32_t i, int count) {
    if (count == 4) {
      char4 q = make_char4(0, 0, 0, 0);
      if (!zero) {
        const float4 v = *reinterpret_cast<const float4*>(values + i);
        q = make_char4(CodeOf(v.x, scale), CodeOf(v.y, scale), CodeOf(v.z, scale),
                       CodeOf(v.w, scale));
      }
      *reinterpret_cast<char4*>(codes + i) = q;
    } else {
      codes[i] = zero ? int8_t{0} : CodeOf(values[i], scale);
    }
  });
}

// sum = +0.0f; sum = sum + float(q_s) * scale_s for s = 0, 1, ..., n-1, each operation rounded.
__device__ float RankOrderSum(const uint8_t* received, const Int8ChunkLayout& layout,
                              int64_t in_chunk, int32_t i, const float* scales) {
  float sum = 0.0f;
  for (int32_t s = 0; s < layout.num_ranks; ++s) {
    const int8_t code = SlotCodes(received, layout, s, in_chunk)[i];
    sum = __fadd_rn(sum, Dequantized(code, scales[s]));
  }
  return sum;
}

__device__ void RankOrderSum4(const uint8_t* received, const Int8ChunkLayout& layout,
                              int64_t in_chunk, int32_t i, const float* scales, float sum[4]) {
  sum[0] = sum[1] = sum[2] = sum[3] = 0.0f;
  for (int32_t s = 0; s < layout.num_ranks; ++s) {
    const char4 q = *reinterpret_cast<const char4*>(SlotCodes(received, layout, s, in_chunk) + i);
    sum[0] = __fadd_rn(sum[0], Dequantized(q.x, scales[s]));
    sum[1] = __fadd_rn(sum[1], Dequantized(q.y, scales[s]));
    sum[2] = __fadd_rn(sum[2], Dequantized(q.z, scales[s]));
    sum[3] = __fadd_rn(sum[3], Dequantized(q.w, scales[s]));
  }
}

// Largest group the reduce kernel keeps the scales of in registers; bigger groups re-read them.
constexpr int kMaxRegisterRanks = 16;

__global__ void ReduceAndRequantizeKernel(const uint8_t* __restrict__ received,
                                          Int8ChunkLayout layout, int32_t rank, bool vec4,
                                          uint8_t* __restrict__ reduced_slot) {
  const int64_t chunk_begin = Int8ChunkBegin(layout, rank);
  const int64_t chunk_blocks = Int8ChunkBegin(layout, rank + 1) - chunk_begin;
  const int64_t in_chunk = static_cast<int64_t>(blockIdx.x) * kWarpsPerCta + threadIdx.x / 32;
  if (in_chunk >= chunk_blocks) return;
  const int lane = threadIdx.x % 32;
  const BlockView view = ViewOfBlock(layout, chunk_begin + in_chunk);

  float scales[kMaxRegisterRanks];
  for (int32_t s = 0; s < layout.num_ranks; ++s)
    scales[s] = SlotScaleValue(received, layout, s, in_chunk);

  // Pass 1: the reduced block's absmax; pass 2 recomputes the same sums (same operations, same
  // bits) and quantizes them, which keeps any block size out of registers and shared memory.
  float absmax = 0.0f;
  bool finite = true;
  ForEachPiece(view.length, vec4, lane, [&](int32_t i, int count) {
    float sum[4];
    if (count == 4) {
      RankOrderSum4(received, layout, in_chunk, i, scales, sum);
    } else {
      sum[0] = RankOrderSum(received, layout, in_chunk, i, scales);
    }
    for (int k = 0; k < count; ++k) {
      absmax = fmaxf(absmax, fabsf(sum[k]));
      finite &= isfinite(sum[k]);
    }
  });
  absmax = WarpMax(absmax);
  finite = __all_sync(kFullMask, finite);

  const float scale = finite ? ScaleOf(absmax) : __int_as_float(0x7fc00000);
  if (lane == 0) *SlotScale(reduced_slot, layout, 0, in_chunk) = scale;
  const bool zero = !finite || scale == 0.0f;
  int8_t* codes = SlotCodes(reduced_slot, layout, 0, in_chunk);
  ForEachPiece(view.length, vec4, lane, [&](int32_t i, int count) {
    if (count == 4) {
      char4 q = make_char4(0, 0, 0, 0);
      if (!zero) {
        float sum[4];
        RankOrderSum4(received, layout, in_chunk, i, scales, sum);
        q = make_char4(CodeOf(sum[0], scale), CodeOf(sum[1], scale), CodeOf(sum[2], scale),
                       CodeOf(sum[3], scale));
      }
      *reinterpret_cast<char4*>(codes + i) = q;
    } else {
      codes[i] =
          zero ? int8_t{0} : CodeOf(RankOrderSum(received, layout, in_chunk, i, scales), scale);
    }
  });
}

__global__ void DequantizeSlotsKernel(const uint8_t* __restrict__ gathered, Int8ChunkLayout layout,
                                      bool vec4, float* __restrict__ out, int32_t* status) {
  const int64_t block = static_cast<int64_t>(blockIdx.x) * kWarpsPerCta + threadIdx.x / 32;
  if (block >= layout.num_blocks) return;
  const int lane = threadIdx.x % 32;
  const BlockView view = ViewOfBlock(layout, block);
  const int64_t owner = Int8ChunkOwner(layout, block);
  const int64_t in_chunk = block - Int8ChunkBegin(layout, owner);
  const int8_t* codes = SlotCodes(gathered, layout, owner, in_chunk);
  const float scale = SlotScaleValue(gathered, layout, owner, in_chunk);
  if (lane == 0 && !isfinite(scale)) Raise(status, kStatusNonFiniteReduced);
  float* values = out + view.begin;
  ForEachPiece(view.length, vec4, lane, [&](int32_t i, int count) {
    if (count == 4) {
      const char4 q = *reinterpret_cast<const char4*>(codes + i);
      *reinterpret_cast<float4*>(values + i) =
          make_float4(Dequantized(q.x, scale), Dequantized(q.y, scale), Dequantized(q.z, scale),
                      Dequantized(q.w, scale));
    } else {
      values[i] = Dequantized(codes[i], scale);
    }
  });
}

// Quads need 4-aligned codes (block_size % 4 == 0; slots are 16-aligned) and 16-aligned floats.
bool CanUseQuads(const Int8ChunkLayout& layout, const void* floats) {
  return layout.block_size % 4 == 0 && reinterpret_cast<uintptr_t>(floats) % 16 == 0;
}

unsigned GridFor(int64_t blocks) {
  return static_cast<unsigned>((blocks + kWarpsPerCta - 1) / kWarpsPerCta);
}

}  // namespace

cudaError_t LaunchQuantizeIntoSlots(const float* x, const Int8ChunkLayout& layout, uint8_t* slots,
                                    int32_t* status, cudaStream_t stream) {
  if (layout.num_blocks == 0) return cudaSuccess;
  QuantizeIntoSlotsKernel<<<GridFor(layout.num_blocks), kWarpsPerCta * 32, 0, stream>>>(
      x, layout, CanUseQuads(layout, x), slots, status);
  return cudaGetLastError();
}

cudaError_t LaunchReduceAndRequantize(const uint8_t* received, const Int8ChunkLayout& layout,
                                      int32_t rank, uint8_t* reduced_slot, cudaStream_t stream) {
  if (layout.num_ranks > kMaxRegisterRanks) return cudaErrorInvalidValue;
  const int64_t chunk_blocks = Int8ChunkBegin(layout, rank + 1) - Int8ChunkBegin(layout, rank);
  if (chunk_blocks == 0) return cudaSuccess;
  ReduceAndRequantizeKernel<<<GridFor(chunk_blocks), kWarpsPerCta * 32, 0, stream>>>(
      received, layout, rank, layout.block_size % 4 == 0, reduced_slot);
  return cudaGetLastError();
}

cudaError_t LaunchDequantizeSlots(const uint8_t* gathered, const Int8ChunkLayout& layout,
                                  float* out, int32_t* status, cudaStream_t stream) {
  if (layout.num_blocks == 0) return cudaSuccess;
  DequantizeSlotsKernel<<<GridFor(layout.num_blocks), kWarpsPerCta * 32, 0, stream>>>(
      gathered, layout, CanUseQuads(layout, out), out, status);
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda
