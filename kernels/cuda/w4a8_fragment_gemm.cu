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

#include <atomic>
#include <cstdint>

#include "kernels/cuda/bulk_copy_device.cuh"
#include "kernels/cuda/decode_gemm_device.cuh"
#include "kernels/cuda/int4_unpack.h"
#include "kernels/cuda/per_device_attribute.h"
#include "kernels/cuda/w4a8_fragment_gemm_launch.h"
#include "kernels/cuda/wgmma_device.cuh"

namespace flatfleet::cuda::internal {
namespace {

using namespace decode_gemm;  // NOLINT: the shared device helpers

constexpr int kChunkK = 64;  // K elements of one 16-byte lane load (two MMAs)
constexpr uint32_t kNibbleMask = 0x0f0f0f0fu;

// The activation slices of kSets sets of 8 tokens.
template <int kSets>
struct ActivationSlice {
  static constexpr int kTokens = 8 * kSets;
  static constexpr int kChunks = W4A8FragmentSliceChunks(kSets);  // a multiple of every depth
  static constexpr int kK = kChunks * kChunkK;
  static constexpr int kRowBytes = kK + 32;  // +8 banks a row: conflict-free 8-byte reads
  static constexpr int kBufferBytes = kTokens * kRowBytes;
  static constexpr int kUnitsPerRow = kK / 16;  // cp.async units
  static_assert(2 * kBufferBytes == W4A8FragmentActivationBytes(kSets));
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

// The symmetric layers' A registers (signed nibbles, no zero points): each two's-complement
// nibble moved to the top of its byte, where as an int8 it reads 16 c. About half the
// instructions of UnpackA, no zero points to widen, and the MMAs sum 16 S exactly (|16 c| <= 128,
// int32 holds it for any k the checks allow): the fold takes S = that >> 4, the same integer.
__device__ __forceinline__ void UnpackTopA(uint32_t row_lo, uint32_t row_hi, uint32_t (&a)[4]) {
  constexpr uint32_t kTopMask = 0xf0f0f0f0u;
  a[0] = (row_lo << 4) & kTopMask;
  a[1] = (row_hi << 4) & kTopMask;
  a[2] = row_lo & kTopMask;
  a[3] = row_hi & kTopMask;
}

// The CTAs per SM the launch bounds ask for: 128 registers a thread at 4 and at 8 warps. (The
// staged path's shared memory allows fewer; its registers stay within the same bound.)
constexpr int MinCtasPerSm(int warps) { return 16 / warps; }

// Where a warp's weights come from. kStaged false: the register ring, kDepth chunks of loads in
// flight per lane. kStaged true: `weight_stages` stages of kDepth chunks in shared memory per
// warp, each one bulk copy per block (and one of its groups' scale entries) issued by the warp's
// lane 0 on the stage's mbarrier as soon as the warp is done with the stage it replaces: a warp
// keeps stages - 1 stages (8-16 KB) in flight without registers, and nothing but its own
// mbarriers couples it to the other warps. The arithmetic is the same in both: same operands,
// same MMAs, same fold. kZeroPoints false (the caller says the layer is symmetric): UnpackTopA,
// the same group sums.
template <int kWarps, int kSets, int kBlocks, int kDepth, bool kStaged, bool kZeroPoints,
          typename Out>
__global__ void __launch_bounds__(kWarps * 32, MinCtasPerSm(kWarps))
    W4A8FragmentKernel(const W4A8FragmentParams p) {
  constexpr int kThreads = kWarps * 32;
  using Slice = ActivationSlice<kSets>;
  static_assert(Slice::kChunks % kDepth == 0, "a slice starts where a ring turn starts");
  constexpr int kBlockStageBytes = W4A8FragmentBlockStageBytes(kDepth);
  constexpr int kStageBytes = kBlocks * kBlockStageBytes;
  __shared__ __align__(16) uint8_t activations[2][Slice::kBufferBytes];
  __shared__ int last_to_arrive;
  extern __shared__ __align__(16) uint8_t staged_weights[];  // the staged path only

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

  // This warp's stream of each block: chunk i of the split is 512 bytes at w_block[b] + 32 i,
  // lane l's 16 of them at + l; the group's scale entries 64 bytes at s_block[b] + 8 group, lane
  // quad g's at + g. A warp whose blocks all lie past n (a tail tile) loads nothing but still
  // copies activations and meets every barrier.
  const uint4* w_block[kBlocks];
  const uint2* s_block[kBlocks];
  bool block_valid[kBlocks];
#pragma unroll
  for (int b = 0; b < kBlocks; ++b) {
    const int64_t block = (static_cast<int64_t>(tile) * kWarps + warp) * kBlocks + b;
    block_valid[b] = block < blocks;
    const int64_t safe = block_valid[b] ? block : 0;
    w_block[b] = p.w_fragments + (safe * chunks_per_block + chunk_begin) * 32;
    s_block[b] = p.w_scales + (safe * groups + group_begin) * 8;
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

  // The register ring: chunk i's loads into slot i % kDepth, with its group's entries (the
  // loads run kDepth chunks ahead of the MMAs, so the loader keeps its own group cursor).
  uint4 w_ring[kDepth][kBlocks];
  uint2 s_ring[kDepth][kBlocks];
  int load_group = 0, load_left_in_group = chunks_per_group;
  auto load_chunk = [&](int i, uint4(&w)[kBlocks], uint2(&s)[kBlocks]) {
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
      if (block_valid[b]) {
        w[b] = LoadStreaming16(reinterpret_cast<const uint32_t*>(w_block[b] + 32 * i + lane));
        s[b] = LoadScales8(s_block[b] + 8 * load_group + g);
      } else {
        w[b] = make_uint4(0, 0, 0, 0);
        s[b] = make_uint2(0, 0);
      }
    }
    if (--load_left_in_group == 0) {
      ++load_group;
      load_left_in_group = chunks_per_group;
    }
  };

  // The staged path: this warp's stages and their mbarriers (one arrival, lane 0's, plus the
  // copies' bytes), and the copy of stage j (chunks j kDepth.. of the split) into slot j % stages.
  const int stages = kStaged ? p.weight_stages : 1;
  const int stage_count = (chunks + kDepth - 1) / kDepth;
  const uint32_t barriers =
      SharedAddress(staged_weights) + static_cast<uint32_t>(warp * stages * 8);
  const uint32_t warp_stages = SharedAddress(staged_weights) +
                               W4A8FragmentStagedBarrierBytes(kWarps, stages) +
                               static_cast<uint32_t>(warp * stages * kStageBytes);
  uint64_t policy = 0;
  auto issue_stage = [&](int j) {
    const int slot = j % stages;
    const int first = j * kDepth;
    const int count = min(kDepth, chunks - first);
    const int first_group = first / chunks_per_group;
    const int group_count = (first + count - 1) / chunks_per_group - first_group + 1;
    const uint32_t weight_bytes = 512u * count, scale_bytes = 64u * group_count;
    uint32_t bytes = 0;
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) bytes += block_valid[b] ? weight_bytes + scale_bytes : 0;
    const uint32_t bar = barriers + 8 * slot;
    bulk_copy::MbarrierArriveExpectTx(bar, bytes);
    const uint32_t stage = warp_stages + slot * kStageBytes;
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
      if (!block_valid[b]) continue;
      bulk_copy::BulkCopyToShared(stage + b * kBlockStageBytes, w_block[b] + 32 * first,
                                  weight_bytes, bar, policy);
      bulk_copy::BulkCopyToShared(stage + b * kBlockStageBytes + kDepth * 512,
                                  s_block[b] + 8 * first_group, scale_bytes, bar, policy);
    }
  };

  if constexpr (kStaged) {
    if (lane == 0) {
      for (int slot = 0; slot < stages; ++slot) wgmma::MbarrierInit(barriers + 8 * slot, 1);
      wgmma::FenceMbarrierInit();
      policy = bulk_copy::EvictFirstPolicy();
      for (int j = 0; j < min(stages, stage_count); ++j) issue_stage(j);
    }
  }
  copy_slice(0);
  if constexpr (!kStaged) {
#pragma unroll
    for (int d = 0; d < kDepth; ++d) {
      if (d < chunks) load_chunk(d, w_ring[d], s_ring[d]);
    }
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

  // The group of the chunk the MMAs are at (counted, not divided: this runs every chunk).
  int group = 0, left_in_group = chunks_per_group;
  for (int base = 0, j = 0; base < chunks; base += kDepth, ++j) {
    if (base % Slice::kChunks == 0) {
      // Slice `slice` has landed (this thread's copies; the barrier makes them everyone's), and
      // every warp is done with the buffer the next slice goes into.
      const int slice = base / Slice::kChunks;
      CopyAsyncWait<0>();
      __syncthreads();
      if (slice + 1 < slices) copy_slice(slice + 1);
    }
    const uint32_t buffer = SharedAddress(activations[(base / Slice::kChunks) & 1]);
    // The staged path: stage j has landed; its scale entries start at its first chunk's group.
    const uint32_t stage = warp_stages + (j % stages) * kStageBytes;
    const int stage_first_group = group;
    if constexpr (kStaged) wgmma::MbarrierWait(barriers + 8 * (j % stages), (j / stages) & 1);
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
        // This chunk's group entries: FP16 scales (x) and zero points (y); read every chunk
        // only for the zero points, else where the group ends.
        const bool group_ends = --left_in_group == 0;
        uint2 entries[kBlocks];
#pragma unroll
        for (int b = 0; b < kBlocks; ++b) {
          if constexpr (kStaged) {
            if (kZeroPoints || group_ends) {
              entries[b] = LoadShared8(stage + b * kBlockStageBytes + kDepth * 512 +
                                       (group - stage_first_group) * 64 + 8 * g);
            }
          } else {
            entries[b] = s_ring[d][b];
          }
        }
#pragma unroll
        for (int b = 0; b < kBlocks; ++b) {
          uint4 w;
          if constexpr (kStaged) {
            w = LoadShared16(stage + b * kBlockStageBytes + (32 * d + lane) * 16);
          } else {
            w = w_ring[d][b];
          }
          uint32_t a_first[4], a_second[4];
          if constexpr (kZeroPoints) {
            const uint32_t zeros = entries[b].y;
            const uint32_t zero_lo = ZeroPlus8x4(static_cast<int8_t>(zeros & 0xff));
            const uint32_t zero_hi = ZeroPlus8x4(static_cast<int8_t>((zeros >> 8) & 0xff));
            UnpackA(w.x, w.y, p.nibble_flip, zero_lo, zero_hi, a_first);
            UnpackA(w.z, w.w, p.nibble_flip, zero_lo, zero_hi, a_second);
          } else {
            UnpackTopA(w.x, w.y, a_first);
            UnpackTopA(w.z, w.w, a_second);
          }
#pragma unroll
          for (int set = 0; set < kSets; ++set) {
            MmaInt8(sums[b][set], a_first, x_first[set].x, x_first[set].y);
          }
#pragma unroll
          for (int set = 0; set < kSets; ++set) {
            MmaInt8(sums[b][set], a_second, x_second[set].x, x_second[set].y);
          }
        }
        if (group_ends) {  // fold the group, in K order
#pragma unroll
          for (int b = 0; b < kBlocks; ++b) {
            const float scale_lo = HalfBitsToFloat(entries[b].x & 0xffff);
            const float scale_hi = HalfBitsToFloat(entries[b].x >> 16);
#pragma unroll
            for (int set = 0; set < kSets; ++set)
#pragma unroll
              for (int e = 0; e < 4; ++e) {
                const int32_t sum = kZeroPoints ? sums[b][set][e] : sums[b][set][e] >> 4;
                partial[b][set][e] =
                    fmaf(static_cast<float>(sum), e < 2 ? scale_lo : scale_hi, partial[b][set][e]);
                sums[b][set][e] = 0;
              }
          }
          ++group;
          left_in_group = chunks_per_group;
        }
        if constexpr (!kStaged) {
          if (i + kDepth < chunks) load_chunk(i + kDepth, w_ring[d], s_ring[d]);
        }
      }
    }
    if constexpr (kStaged) {
      // Every lane's reads of the stage are done (their values feed MMAs issued above), so lane
      // 0 may overwrite it through the async proxy.
      __syncwarp();
      if (lane == 0 && j + stages < stage_count) {
        wgmma::FenceProxyAsync();
        issue_stage(j + stages);
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

template <int kWarps, int kSets, int kBlocks, int kDepth, bool kStaged, bool kZeroPoints,
          typename Out>
constexpr auto FragmentKernel() {
  return W4A8FragmentKernel<kWarps, kSets, kBlocks, kDepth, kStaged, kZeroPoints, Out>;
}

// The staged path's dynamic shared memory, and the most a CTA may take beside its static
// activation buffers (opted into once per device and kernel).
int StagedDynamicBytes(const W4A8FragmentParams& p, int warps, int blocks, int depth) {
  return p.weight_stages > 0 ? W4A8FragmentStagedSharedBytes(warps, blocks, depth, p.weight_stages)
                             : 0;
}
template <int kSets>
constexpr int MaxStagedDynamicBytes() {
  return kW4A8FragmentMaxSharedBytes - W4A8FragmentActivationBytes(kSets) - 16;
}

template <int kWarps, int kSets, int kBlocks, int kDepth, bool kStaged, bool kZeroPoints,
          typename Out>
cudaError_t LaunchKernel(const W4A8FragmentParams& p, dim3 grid, cudaStream_t stream) {
  constexpr auto kernel =
      FragmentKernel<kWarps, kSets, kBlocks, kDepth, kStaged, kZeroPoints, Out>();
  const int dynamic_bytes = StagedDynamicBytes(p, kWarps, kBlocks, kDepth);
  if constexpr (kStaged) {
    static std::atomic<uint64_t> configured{0};
    if (const cudaError_t error = SetMaxDynamicSharedMemoryOncePerDevice(
            configured, kernel, MaxStagedDynamicBytes<kSets>());
        error != cudaSuccess) {
      return error;
    }
  }
  kernel<<<grid, kWarps * 32, dynamic_bytes, stream>>>(p);
  return cudaGetLastError();
}

template <int kWarps, int kSets, int kBlocks, int kDepth, bool kStaged, bool kZeroPoints>
cudaError_t LaunchOutput(const W4A8FragmentParams& p, dim3 grid, cudaStream_t stream) {
  return p.y_is_bf16
             ? LaunchKernel<kWarps, kSets, kBlocks, kDepth, kStaged, kZeroPoints, __nv_bfloat16>(
                   p, grid, stream)
             : LaunchKernel<kWarps, kSets, kBlocks, kDepth, kStaged, kZeroPoints, float>(p, grid,
                                                                                         stream);
}

template <int kWarps, int kSets, int kBlocks, int kDepth>
cudaError_t LaunchShape(const W4A8FragmentParams& p, cudaStream_t stream) {
  const int64_t channels = int64_t{16} * kWarps * kBlocks;
  const dim3 grid(static_cast<unsigned>((p.n + channels - 1) / channels),
                  static_cast<unsigned>(p.split));
  if (p.weight_stages > 0) {
    return p.zero_points
               ? LaunchOutput<kWarps, kSets, kBlocks, kDepth, true, true>(p, grid, stream)
               : LaunchOutput<kWarps, kSets, kBlocks, kDepth, true, false>(p, grid, stream);
  }
  return p.zero_points
             ? LaunchOutput<kWarps, kSets, kBlocks, kDepth, false, true>(p, grid, stream)
             : LaunchOutput<kWarps, kSets, kBlocks, kDepth, false, false>(p, grid, stream);
}

template <int kWarps, int kSets, int kBlocks, int kDepth>
int ResidentCtas(int weight_stages) {
  W4A8FragmentParams p;
  p.weight_stages = weight_stages;
  const int dynamic_bytes = StagedDynamicBytes(p, kWarps, kBlocks, kDepth);
  int ctas = 0;
  cudaError_t error;
  if (weight_stages > 0) {
    constexpr auto kernel =
        FragmentKernel<kWarps, kSets, kBlocks, kDepth, true, true, __nv_bfloat16>();
    static std::atomic<uint64_t> configured{0};
    error =
        SetMaxDynamicSharedMemoryOncePerDevice(configured, kernel, MaxStagedDynamicBytes<kSets>());
    if (error == cudaSuccess) {
      error =
          cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ctas, kernel, kWarps * 32, dynamic_bytes);
    }
  } else {
    constexpr auto kernel =
        FragmentKernel<kWarps, kSets, kBlocks, kDepth, false, true, __nv_bfloat16>();
    error = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ctas, kernel, kWarps * 32, 0);
  }
  return error == cudaSuccess ? ctas : 0;
}

// More than 16 rows: one block per warp (the 4 sets' sums and partials take the registers a
// second block's ring would need); two blocks only with the 4-deep ring (8 deep would spill).
// Neither the channels per warp, the ring depth, the weight stages nor the warps per CTA changes
// a result.
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
int ResidentCtasWarps(int rows, int blocks_per_warp, int ring_depth, int weight_stages) {
  const bool deep = ring_depth == 8;
  const int s = weight_stages;
  if (rows > 16) return deep ? ResidentCtas<kWarps, 4, 1, 8>(s) : ResidentCtas<kWarps, 4, 1, 4>(s);
  if (rows > 8) {
    if (blocks_per_warp == 2) return ResidentCtas<kWarps, 2, 2, 4>(s);
    return deep ? ResidentCtas<kWarps, 2, 1, 8>(s) : ResidentCtas<kWarps, 2, 1, 4>(s);
  }
  if (blocks_per_warp == 2) return ResidentCtas<kWarps, 1, 2, 4>(s);
  return deep ? ResidentCtas<kWarps, 1, 1, 8>(s) : ResidentCtas<kWarps, 1, 1, 4>(s);
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

int W4A8FragmentResidentCtas(int rows, int warps_per_cta, int blocks_per_warp, int ring_depth,
                             int weight_stages) {
  return warps_per_cta == 8
             ? ResidentCtasWarps<8>(rows, blocks_per_warp, ring_depth, weight_stages)
             : ResidentCtasWarps<4>(rows, blocks_per_warp, ring_depth, weight_stages);
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
