// The W4A8 fragment GEMM (w4a8_fragment_gemm.h) and the repack into its layout
// (w4a8_fragment_layout.h).
//
// One CTA of kWarps (4 or 8) warps per (tile of 16 * kWarps * kBlocks output channels, split of
// K). Warp w owns kBlocks blocks of 16 channels and walks the split's chunks of 64 K elements in
// order:
//  * weights: lane l loads 16 bytes per block and chunk (its A registers of the chunk's two
//    m16n8k32 MMAs), kDepth (4 or 8) chunks ahead, into a register ring; with the group's FP16
//    scales and zero points (8 bytes, broadcast to the lane quad) beside them. Nothing waits on
//    them but the MMAs that use them;
//  * activations: the split's K range of every token, in slices of kSliceChunks chunks, copied
//    with cp.async by all kWarps warps into a double buffer in shared memory one slice ahead (one
//    barrier per slice), read by all of them: 8 warps amortise one copy over twice the weights;
//    rows padded by 32 bytes so that the lanes' 8-byte reads (token g, bytes 8t..8t+7) hit
//    distinct banks per half-warp;
//  * the weights are the MMA's A operand (16 channels) and the tokens its B (8 per MMA, kSets
//    MMAs per A fragment), so m = 1 costs one MMA per 16 x 32 weights;
//  * unpack: mask / shift, the nibble flip, subtract zero + 8, xor 0x80 (int4_unpack.h);
//  * when a chunk ends its group: partial = fmaf(float(sum), s_w, partial), sum = 0;
//  * the end: with one split, y = round(partial * s_x [+ add]) straight away; else the partial to
//    split_partials, then the tile's last CTA (counter) sums the splits in order and finishes.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/decode_gemm_device.cuh"
#include "kernels/cuda/int4_unpack.h"
#include "kernels/cuda/w4a8_fragment_gemm_launch.h"

namespace flatfleet::cuda::internal {
namespace {

using namespace decode_gemm;  // NOLINT: the shared device helpers

constexpr int kChunkK = 64;  // K elements of one 16-byte lane load (two MMAs)
constexpr uint32_t kNibbleMask = 0x0f0f0f0fu;

// The activation slices of kSets sets of 8 tokens.
template <int kSets>
struct ActivationSlice {
  static constexpr int kTokens = 8 * kSets;
  static constexpr int kChunks = kSets <= 2 ? 16 : 8;  // a multiple of every ring depth (4, 8)
  static constexpr int kK = kChunks * kChunkK;
  static constexpr int kRowBytes = kK + 32;  // +8 banks a row: conflict-free 8-byte reads
  static constexpr int kBufferBytes = kTokens * kRowBytes;
  static constexpr int kUnitsPerRow = kK / 16;  // cp.async units
};

__device__ __forceinline__ uint2 LoadShared8(uint32_t shared) {
  uint2 v;
  asm volatile("ld.shared.v2.u32 {%0, %1}, [%2];\n"
               : "=r"(v.x), "=r"(v.y)
               : "r"(shared)
               : "memory");
  return v;
}

__device__ __forceinline__ uint2 LoadScales8(const uint2* pointer) {
  uint2 v;
  asm volatile("ld.global.nc.v2.u32 {%0, %1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "l"(pointer));
  return v;
}

// The four A registers of one MMA from two fragment words (rows g and g + 8).
__device__ __forceinline__ void UnpackA(uint32_t row_lo, uint32_t row_hi, uint32_t flip,
                                        uint32_t zero_lo, uint32_t zero_hi, uint32_t (&a)[4]) {
  a[0] = CenteredInt8x4(row_lo & kNibbleMask, flip, zero_lo);
  a[1] = CenteredInt8x4(row_hi & kNibbleMask, flip, zero_hi);
  a[2] = CenteredInt8x4((row_lo >> 4) & kNibbleMask, flip, zero_lo);
  a[3] = CenteredInt8x4((row_hi >> 4) & kNibbleMask, flip, zero_hi);
}

// The CTAs per SM the launch bounds ask for: 128 registers a thread at 4 and at 8 warps.
constexpr int MinCtasPerSm(int warps) { return 16 / warps; }

// kWarps: warps per CTA (4 or 8); kDepth: chunks of weight loads in flight per lane (4 or 8).
template <int kWarps, int kSets, int kBlocks, int kDepth, typename Out>
__global__ void __launch_bounds__(kWarps * 32, MinCtasPerSm(kWarps))
    W4A8FragmentKernel(const W4A8FragmentParams p) {
  constexpr int kThreads = kWarps * 32;
  using Slice = ActivationSlice<kSets>;
  static_assert(Slice::kChunks % kDepth == 0, "a slice starts where a ring turn starts");
  __shared__ __align__(16) uint8_t activations[2][Slice::kBufferBytes];
  __shared__ int last_to_arrive;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int tile = blockIdx.x, split_index = blockIdx.y;
  const int groups = p.k / p.group_size;
  const int chunks_per_group = p.group_size / kChunkK;
  const int groups_per_split = (groups + p.split - 1) / p.split;
  const int group_begin = split_index * groups_per_split;
  const int group_end = min(groups, group_begin + groups_per_split);  // > group_begin (host)
  const int chunk_begin = group_begin * chunks_per_group;
  const int chunks = (group_end - group_begin) * chunks_per_group;
  const int k_begin = chunk_begin * kChunkK;
  const int k_end = group_end * p.group_size;
  const int64_t chunks_per_block = p.k / kChunkK;
  const int64_t blocks = (static_cast<int64_t>(p.n) + 15) / 16;

  // This lane's stream of each block: chunk i of the split at w_lane[b] + 32 i, the group's
  // scales at s_lane[b] + 8 (i / chunks_per_group). A warp whose blocks all lie past n (a tail
  // tile) loads nothing but still copies activations and meets every barrier.
  const uint4* w_lane[kBlocks];
  const uint2* s_lane[kBlocks];
  bool block_valid[kBlocks];
#pragma unroll
  for (int b = 0; b < kBlocks; ++b) {
    const int64_t block = (static_cast<int64_t>(tile) * kWarps + warp) * kBlocks + b;
    block_valid[b] = block < blocks;
    const int64_t safe = block_valid[b] ? block : 0;
    w_lane[b] = p.w_fragments + (safe * chunks_per_block + chunk_begin) * 32 + lane;
    s_lane[b] = p.w_scales + (safe * groups + group_begin) * 8 + g;
  }

  // Slice s of the split's activations into buffer s % 2 (rows >= m and columns past the split
  // zero-filled, nothing read for them).
  const int slices = (chunks + Slice::kChunks - 1) / Slice::kChunks;
  auto copy_slice = [&](int slice) {
    const int slice_k = k_begin + slice * Slice::kK;
    const uint32_t buffer = SharedAddress(activations[slice & 1]);
    for (int unit = threadIdx.x; unit < Slice::kTokens * Slice::kUnitsPerRow; unit += kThreads) {
      const int row = unit / Slice::kUnitsPerRow, column = unit % Slice::kUnitsPerRow;
      const int at = slice_k + 16 * column;
      const bool valid = row < p.m && at < k_end;
      const int8_t* source = p.x_codes + (valid ? static_cast<int64_t>(row) * p.k + at : 0);
      CopyAsync16(buffer + row * Slice::kRowBytes + 16 * column, source, valid);
    }
    CopyAsyncCommit();
  };

  uint4 w_ring[kDepth][kBlocks];
  uint2 s_ring[kDepth][kBlocks];
  auto load_chunk = [&](int i, uint4(&w)[kBlocks], uint2(&s)[kBlocks]) {
    const int group = i / chunks_per_group;
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
      if (block_valid[b]) {
        w[b] = LoadStreaming16(reinterpret_cast<const uint32_t*>(w_lane[b] + 32 * i));
        s[b] = LoadScales8(s_lane[b] + 8 * group);
      } else {
        w[b] = make_uint4(0, 0, 0, 0);
        s[b] = make_uint2(0, 0);
      }
    }
  };

  copy_slice(0);
#pragma unroll
  for (int d = 0; d < kDepth; ++d) {
    if (d < chunks) load_chunk(d, w_ring[d], s_ring[d]);
  }

  int32_t sums[kBlocks][kSets][4];
  float partial[kBlocks][kSets][4];
#pragma unroll
  for (int b = 0; b < kBlocks; ++b)
#pragma unroll
    for (int set = 0; set < kSets; ++set)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        sums[b][set][e] = 0;
        partial[b][set][e] = 0.0f;
      }

  for (int base = 0; base < chunks; base += kDepth) {
    if (base % Slice::kChunks == 0) {
      // Slice `slice` has landed (this thread's copies; the barrier makes them everyone's), and
      // every warp is done with the buffer the next slice goes into.
      const int slice = base / Slice::kChunks;
      CopyAsyncWait<0>();
      __syncthreads();
      if (slice + 1 < slices) copy_slice(slice + 1);
    }
    const uint32_t buffer = SharedAddress(activations[(base / Slice::kChunks) & 1]);
#pragma unroll
    for (int d = 0; d < kDepth; ++d) {
      const int i = base + d;
      if (i < chunks) {
        // B operands: token 8 set + g, bytes 8t..8t+7 of each 32-element half of the chunk.
        uint2 x_first[kSets], x_second[kSets];
#pragma unroll
        for (int set = 0; set < kSets; ++set) {
          const uint32_t row =
              buffer + (8 * set + g) * Slice::kRowBytes + (i % Slice::kChunks) * kChunkK + 8 * t;
          x_first[set] = LoadShared8(row);
          x_second[set] = LoadShared8(row + 32);
        }
#pragma unroll
        for (int b = 0; b < kBlocks; ++b) {
          const uint4 w = w_ring[d][b];
          const uint32_t zeros = s_ring[d][b].y;
          const uint32_t zero_lo = ZeroPlus8x4(static_cast<int8_t>(zeros & 0xff));
          const uint32_t zero_hi = ZeroPlus8x4(static_cast<int8_t>((zeros >> 8) & 0xff));
          uint32_t a[4];
          UnpackA(w.x, w.y, p.nibble_flip, zero_lo, zero_hi, a);
#pragma unroll
          for (int set = 0; set < kSets; ++set) {
            MmaInt8(sums[b][set], a, x_first[set].x, x_first[set].y);
          }
          UnpackA(w.z, w.w, p.nibble_flip, zero_lo, zero_hi, a);
#pragma unroll
          for (int set = 0; set < kSets; ++set) {
            MmaInt8(sums[b][set], a, x_second[set].x, x_second[set].y);
          }
        }
        if ((i + 1) % chunks_per_group == 0) {  // the group ends: fold it, in K order
#pragma unroll
          for (int b = 0; b < kBlocks; ++b) {
            const float scale_lo = HalfBitsToFloat(s_ring[d][b].x & 0xffff);
            const float scale_hi = HalfBitsToFloat(s_ring[d][b].x >> 16);
#pragma unroll
            for (int set = 0; set < kSets; ++set)
#pragma unroll
              for (int e = 0; e < 4; ++e) {
                partial[b][set][e] = fmaf(static_cast<float>(sums[b][set][e]),
                                          e < 2 ? scale_lo : scale_hi, partial[b][set][e]);
                sums[b][set][e] = 0;
              }
          }
        }
        if (i + kDepth < chunks) load_chunk(i + kDepth, w_ring[d], s_ring[d]);
      }
    }
  }

  // Calls visit(b, set, e, token, channel) for each of this lane's outputs inside m x n: C element
  // e of block b, set `set` is channel 16 b + g + 8 (e / 2) of the warp, token 8 set + 2 t + e % 2.
  const int64_t warp_channel = (static_cast<int64_t>(tile) * kWarps + warp) * kBlocks * 16;
  auto for_each_output = [&](auto&& visit) {
#pragma unroll
    for (int b = 0; b < kBlocks; ++b)
#pragma unroll
      for (int set = 0; set < kSets; ++set)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int64_t channel = warp_channel + 16 * b + g + 8 * (e / 2);
          const int token = 8 * set + 2 * t + e % 2;
          if (token < p.m && channel < p.n) visit(b, set, e, token, channel);
        }
  };
  const bool split_k = p.split > 1;
  for_each_output([&](int b, int set, int e, int token, int64_t channel) {
    if (split_k) {
      p.split_partials[(static_cast<int64_t>(split_index) * p.m + token) * p.n + channel] =
          partial[b][set][e];
    } else {
      Finish<Out>(p, partial[b][set][e], HalfBitsToFloat(p.x_scales[token]), token,
                  static_cast<int>(channel));
    }
  });
  if (!split_k) return;

  // The last CTA of the tile to arrive adds the splits' partials in split order.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    last_to_arrive = atomicAdd(p.split_counters + tile, 1) == p.split - 1;
  }
  __syncthreads();
  if (!last_to_arrive) return;
  __threadfence();
  const int64_t split_stride = static_cast<int64_t>(p.m) * p.n;
  for_each_output([&](int, int, int, int token, int64_t channel) {
    const float* column = p.split_partials + static_cast<int64_t>(token) * p.n + channel;
    float sum = __ldcg(column);
    for (int s = 1; s < p.split; ++s) sum = __fadd_rn(sum, __ldcg(column + s * split_stride));
    Finish<Out>(p, sum, HalfBitsToFloat(p.x_scales[token]), token, static_cast<int>(channel));
  });
  if (threadIdx.x == 0) p.split_counters[tile] = 0;  // every split has arrived: ready again
}

template <int kWarps, int kSets, int kBlocks, int kDepth>
cudaError_t LaunchShape(const W4A8FragmentParams& p, cudaStream_t stream) {
  const int64_t channels = int64_t{16} * kWarps * kBlocks;
  const dim3 grid(static_cast<unsigned>((p.n + channels - 1) / channels),
                  static_cast<unsigned>(p.split));
  constexpr int kThreads = kWarps * 32;
  if (p.y_is_bf16) {
    W4A8FragmentKernel<kWarps, kSets, kBlocks, kDepth, __nv_bfloat16>
        <<<grid, kThreads, 0, stream>>>(p);
  } else {
    W4A8FragmentKernel<kWarps, kSets, kBlocks, kDepth, float><<<grid, kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

template <int kWarps, int kSets, int kBlocks, int kDepth>
int ResidentCtas() {
  int ctas = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(
          &ctas, W4A8FragmentKernel<kWarps, kSets, kBlocks, kDepth, __nv_bfloat16>, kWarps * 32,
          0) != cudaSuccess) {
    return 0;
  }
  return ctas;
}

// More than 16 rows: one block per warp (the 4 sets' sums and partials take the registers a
// second block's ring would need); two blocks only with the 4-deep ring (8 deep would spill).
// Neither the channels per warp, the ring depth nor the warps per CTA changes a result.
template <int kWarps>
cudaError_t LaunchWarps(const W4A8FragmentParams& p, cudaStream_t stream) {
  const bool deep = p.ring_depth == 8;
  if (p.m > 16) {
    return deep ? LaunchShape<kWarps, 4, 1, 8>(p, stream) : LaunchShape<kWarps, 4, 1, 4>(p, stream);
  }
  if (p.m > 8) {
    if (p.blocks_per_warp == 2) return LaunchShape<kWarps, 2, 2, 4>(p, stream);
    return deep ? LaunchShape<kWarps, 2, 1, 8>(p, stream) : LaunchShape<kWarps, 2, 1, 4>(p, stream);
  }
  if (p.blocks_per_warp == 2) return LaunchShape<kWarps, 1, 2, 4>(p, stream);
  return deep ? LaunchShape<kWarps, 1, 1, 8>(p, stream) : LaunchShape<kWarps, 1, 1, 4>(p, stream);
}

template <int kWarps>
int ResidentCtasWarps(int rows, int blocks_per_warp, int ring_depth) {
  const bool deep = ring_depth == 8;
  if (rows > 16) return deep ? ResidentCtas<kWarps, 4, 1, 8>() : ResidentCtas<kWarps, 4, 1, 4>();
  if (rows > 8) {
    if (blocks_per_warp == 2) return ResidentCtas<kWarps, 2, 2, 4>();
    return deep ? ResidentCtas<kWarps, 2, 1, 8>() : ResidentCtas<kWarps, 2, 1, 4>();
  }
  if (blocks_per_warp == 2) return ResidentCtas<kWarps, 1, 2, 4>();
  return deep ? ResidentCtas<kWarps, 1, 1, 8>() : ResidentCtas<kWarps, 1, 1, 4>();
}

__global__ void PackW4A8FragmentsKernel(const DeviceW4A8Source s, uint32_t* fragments,
                                        uint32_t* fragment_scales) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t words = W4A8FragmentWordCount(s.n, s.k);
  for (int64_t i = first; i < words; i += stride) {
    const W4A8FragmentSourceWord source = W4A8FragmentSource(i, s.k);
    fragments[i] = source.row < s.n ? s.words[source.row * (s.k / 8) + source.word] : 0u;
  }
  const int64_t groups = s.k / s.group_size;
  const int64_t entries = W4A8FragmentBlocks(s.n) * groups * 8;
  for (int64_t i = first; i < entries; i += stride) {
    const W4A8FragmentScaleEntry entry =
        MakeW4A8FragmentScaleEntry(i, s.n, groups, s.scales, s.zero_points);
    fragment_scales[2 * i] = entry.scales;
    fragment_scales[2 * i + 1] = entry.zeros;
  }
}

}  // namespace

cudaError_t LaunchW4A8Fragment(const W4A8FragmentParams& p, cudaStream_t stream) {
  return p.warps_per_cta == 8 ? LaunchWarps<8>(p, stream) : LaunchWarps<4>(p, stream);
}

int W4A8FragmentResidentCtas(int rows, int warps_per_cta, int blocks_per_warp, int ring_depth) {
  return warps_per_cta == 8 ? ResidentCtasWarps<8>(rows, blocks_per_warp, ring_depth)
                            : ResidentCtasWarps<4>(rows, blocks_per_warp, ring_depth);
}

cudaError_t LaunchPackW4A8Fragments(const DeviceW4A8Source& source, uint32_t* fragments,
                                    uint32_t* fragment_scales, cudaStream_t stream) {
  constexpr int kPackThreads = 256;
  const int64_t words = W4A8FragmentWordCount(source.n, source.k);
  const int64_t blocks = (words + kPackThreads - 1) / kPackThreads;
  const unsigned grid = static_cast<unsigned>(blocks < 8192 ? (blocks > 0 ? blocks : 1) : 8192);
  PackW4A8FragmentsKernel<<<grid, kPackThreads, 0, stream>>>(source, fragments, fragment_scales);
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
