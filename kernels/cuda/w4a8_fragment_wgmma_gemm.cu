// The W4A8 fragment wgmma GEMM (w4a8_fragment_wgmma_gemm.h).
//
// One CTA of three warpgroups per 128 output channels x kTokens (64 or 128) tokens, over all of K
// in tiles of 128 (one fragment block's two 64-element chunks):
//  * warpgroup 0 produces: for tile kt it copies the activations (cp.async, 16 bytes a thread,
//    into wgmma's K-major 128-byte-swizzled layout) and the 8 blocks' fragment words into ring
//    stage kt % kStages; the stage's full barrier completes when they have landed;
//  * warpgroups 1 and 2 consume channels 0-63 and 64-127: each warp reads its 16-channel block's
//    16 bytes a lane per chunk from shared memory, and turns them into the A registers of two
//    wgmma m64nNk32 (A from registers, B the activations from shared memory) by four shuffles per
//    32-element half (below) and the unpack (mask / shift, nibble flip, zero point): the weights
//    never go back to shared memory as INT8. The next tile is prepared while this tile's wgmmas
//    run; at a group's end the exact int32 sums are folded, partial = fmaf(float(sum), s_w,
//    partial) in ascending group order (the magic-number conversion: the sums accumulate onto the
//    bits of 1.5 * 2^23), then the stage is released;
//  * the two consumers are coupled only through the ring, so one's fold and unpack run while the
//    other's wgmmas do;
//  * the epilogue stages each consumer's float partials through shared memory (transposed: the
//    wgmma rows are channels) and writes y = round(partial * s_x [+ add]) 16 bytes a thread.
//
// The k order. Lane (g, t) of the fragment layout holds, per 32-element half, the word of K
// elements 8t..8t+7 (low nibbles 8t..8t+3, high nibbles 8t+4..8t+7) of rows g and g + 8; wgmma's
// A registers of lane (g, t) want K 4t..4t+3 and 16+4t..16+4t+3 in natural order (the
// activations are copied as they are). K 4t..4t+3 are the low (t even) or high (t odd) nibbles of
// lane (g, t / 2)'s word, K 16+4t..16+4t+3 those of lane (g, 2 + t / 2)'s: two shuffles a row.
// (A first version reordered the activations instead, with 4-byte cp.async: 4,300 cycles a tile,
// bound by the copies; bench/RESULTS.md, session 9.)
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/decode_gemm_device.cuh"
#include "kernels/cuda/int4_unpack.h"
#include "kernels/cuda/w4a8_fragment_wgmma_gemm_launch.h"
#include "kernels/cuda/w4a8_mma_sync_tile.cuh"
#include "kernels/cuda/wgmma_device.cuh"

namespace flatfleet::cuda::internal {
namespace {

using decode_gemm::CopyAsync16;
using decode_gemm::LoadShared16;
using decode_gemm::SharedAddress;
using w4a8_mma::Finish;
using w4a8_mma::HalfBitsToFloat;
using w4a8_mma::kMagicBits;
using w4a8_mma::kMagicFloat;
using w4a8_mma::OptInDynamicSharedMemory;
using w4a8_mma::Store;
using namespace wgmma;  // NOLINT: the shared Hopper helpers

constexpr int kChannels = 128;                 // output channels a CTA: two consumers x 64
constexpr int kBlocksPerCta = kChannels / 16;  // fragment blocks a CTA
constexpr int kTileK = 128;                    // K elements a stage: two fragment chunks
constexpr int kThreads = 384;                  // the producer warpgroup and two consumers
constexpr int kWeightStageBytes = kBlocksPerCta * 2 * 512;
// 128 x 88 + 256 x 208 = 63,488 of the SM's 65,536 registers (ptxas: no spills; with 72 / 216 the
// producer spilled).
constexpr int kProducerRegisters = 88, kConsumerRegisters = 208;
// Tiles are taken 16 token tiles at a time across every channel tile, so that the CTAs resident
// at once share their activations and weights in L2.
constexpr int kRasterGroupM = 16;
// A consumer's 64 channels a staged token row, padded so that the transposed writes hit 32 banks.
constexpr int kStagingRowFloats = 64 + 4;
constexpr uint32_t kNibbleMask = 0x0f0f0f0fu;

template <int kTokens>
struct Shape {
  static constexpr int kStages = kTokens == 128 ? 5 : 8;
  static constexpr int kActStageBytes = kTokens * 128;
  static constexpr int kAccumulators = kTokens / 2;  // a consumer thread's share of 64 x kTokens
  // 1024 bytes of slack to align the swizzled stages to their 1024-byte atoms, then the stages and
  // the full and empty barriers.
  static constexpr int kSmemBytes =
      1024 + kStages * (kActStageBytes + kWeightStageBytes) + 2 * kStages * 8 + 16;
  static_assert(2 * kTokens * kStagingRowFloats * 4 <= kStages * kActStageBytes,
                "the epilogue's staging fits in the activation stages");
};

__device__ __forceinline__ uint2 LoadScales8(const uint2* pointer) {
  uint2 v;
  asm volatile("ld.global.nc.v2.u32 {%0, %1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "l"(pointer));
  return v;
}

// The four A registers of one m64nNk32 k-step (rows g and g + 8 of the warp's 16, natural k
// order) from the fragment words `lo` (row g) and `hi` (row g + 8) of one 32-element half, held
// by the lanes of this lane's quad: see the k order above.
__device__ __forceinline__ void ShuffleUnpackA(uint32_t lo, uint32_t hi, int lane, uint32_t flip,
                                               uint32_t zero_lo, uint32_t zero_hi,
                                               uint32_t (&a)[4]) {
  const int t = lane % 4, quad = lane - t;
  const int first = quad + t / 2, second = quad + 2 + t / 2;  // K 4t.. and 16+4t..
  const uint32_t shift = 4 * (t % 2);
  const uint32_t lo_first = __shfl_sync(0xffffffffu, lo, first);
  const uint32_t hi_first = __shfl_sync(0xffffffffu, hi, first);
  const uint32_t lo_second = __shfl_sync(0xffffffffu, lo, second);
  const uint32_t hi_second = __shfl_sync(0xffffffffu, hi, second);
  a[0] = CenteredInt8x4((lo_first >> shift) & kNibbleMask, flip, zero_lo);
  a[1] = CenteredInt8x4((hi_first >> shift) & kNibbleMask, flip, zero_hi);
  a[2] = CenteredInt8x4((lo_second >> shift) & kNibbleMask, flip, zero_lo);
  a[3] = CenteredInt8x4((hi_second >> shift) & kNibbleMask, flip, zero_hi);
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// d (64 x N s32, this thread's N / 2) += A (64 x 32 s8, this thread's four registers) * B (32 x N
// s8, K-major in shared memory), for N = 64, 32 and 16.
__device__ __forceinline__ void WgmmaS8RegisterA(int32_t (&d)[32], const uint32_t (&a)[4],
                                                 uint64_t b) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "
      "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p;\n"
      "}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]),
        "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]),
        "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]),
        "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]),
        "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
}

__device__ __forceinline__ void WgmmaS8RegisterA(int32_t (&d)[16], const uint32_t (&a)[4],
                                                 uint64_t b) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %21, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k32.s32.s8.s8 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%16, %17, %18, "
      "%19}, %20, p;\n"
      "}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]),
        "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]),
        "+r"(d[14]), "+r"(d[15])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
}

__device__ __forceinline__ void WgmmaS8RegisterA(int32_t (&d)[8], const uint32_t (&a)[4],
                                                 uint64_t b) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %13, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k32.s32.s8.s8 "
      "{%0, %1, %2, %3, %4, %5, %6, %7}, {%8, %9, %10, %11}, %12, p;\n"
      "}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]),
        "+r"(d[7])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
}
#endif

__device__ __forceinline__ void StoreEight(float* y, const float (&v)[8]) {
  reinterpret_cast<float4*>(y)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(y)[1] = make_float4(v[4], v[5], v[6], v[7]);
}
__device__ __forceinline__ void StoreEight(__nv_bfloat16* y, const float (&v)[8]) {
  uint4 packed;
  uint32_t* words = reinterpret_cast<uint32_t*>(&packed);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
    words[i] = *reinterpret_cast<const uint32_t*>(&pair);
  }
  *reinterpret_cast<uint4*>(y) = packed;
}

// One tile's A registers (four k32 steps) and the scales of its group's two rows of this thread.
struct TileOperands {
  uint32_t a[4][4];
  float scale_lo, scale_hi;
};

template <int kTokens, int kParts, typename Out>
__global__ void __launch_bounds__(kThreads, 1)
    W4A8FragmentWgmmaKernel(const W4A8FragmentWgmmaParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using S = Shape<kTokens>;
  extern __shared__ __align__(1024) uint8_t shared_raw[];
  uint8_t* shared = shared_raw + ((1024 - (SharedAddress(shared_raw) & 1023)) & 1023);
  uint8_t* act_shared = shared;  // kStages x kTokens rows of 128 bytes, swizzled, words reordered
  uint8_t* w_shared = shared + S::kStages * S::kActStageBytes;  // kStages x 8 blocks x 1 KiB
  const uint32_t bars = SharedAddress(w_shared + S::kStages * kWeightStageBytes);
  auto full = [&](int stage) { return bars + 8 * stage; };
  auto empty = [&](int stage) { return bars + 8 * (S::kStages + stage); };
  // Whether this CTA is the last of its tile's splits (the split-K epilogue's broadcast).
  int* last_split =
      reinterpret_cast<int*>(w_shared + S::kStages * kWeightStageBytes + 2 * S::kStages * 8);

  // Grouped rasterisation: bands of kRasterGroupM token tiles, token tiles fastest in a band.
  const int m_tiles = (p.m + kTokens - 1) / kTokens, n_tiles = (p.n + kChannels - 1) / kChannels;
  const int linear = blockIdx.x;
  const int per_band = kRasterGroupM * n_tiles;
  const int first_m = (linear / per_band) * kRasterGroupM;
  const int band_rows = min(m_tiles - first_m, kRasterGroupM);
  const int local = linear % per_band;
  const int m0 = (first_m + local % band_rows) * kTokens;
  const int n_tile = local / band_rows;
  const int64_t block0 = static_cast<int64_t>(n_tile) * kBlocksPerCta;

  const int tid = threadIdx.x;
  const int tiles_per_group = p.group_size / kTileK;
  const int groups = p.k / p.group_size;
  // This CTA's split of K: whole groups [group_begin, group_end) (never empty: the host checks),
  // tiles tile_begin + 0 .. k_tiles - 1 (kt below counts from the split's first tile).
  const int split_index = blockIdx.y;
  const int groups_per_split = (groups + p.split - 1) / p.split;
  const int group_begin = split_index * groups_per_split;
  const int group_end = min(groups, group_begin + groups_per_split);
  const int local_groups = group_end - group_begin;
  const int tile_begin = group_begin * tiles_per_group;
  const int k_tiles = local_groups * tiles_per_group;
  const int64_t chunks_per_block = p.k / 64;
  const int64_t blocks = (static_cast<int64_t>(p.n) + 15) / 16;

  if (tid == 0) {
    for (int s = 0; s < S::kStages; ++s) {
      MbarrierInit(full(s), 128);   // one arrival per producer thread, when its copies landed
      MbarrierInit(empty(s), 256);  // every consumer thread, when its wgmmas are done
    }
    FenceMbarrierInit();
  }
  __syncthreads();

  if (tid < 128) {  // the producer warpgroup
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProducerRegisters));
#pragma unroll 1
    for (int kt = 0; kt < k_tiles; ++kt) {
      const int stage = kt % S::kStages;
      // The stage last held tile kt - kStages: wait until both consumers released it.
      if (kt >= S::kStages) MbarrierWait(empty(stage), ((kt / S::kStages) + 1) & 1);
      // Activation chunk u = tid + 128 j: row u / 8, 16-byte chunk u % 8 (8 threads a row).
      uint8_t* act = act_shared + stage * S::kActStageBytes;
      const int8_t* x = p.x_codes + static_cast<int64_t>(tile_begin + kt) * kTileK;
#pragma unroll
      for (int j = 0; j < kTokens * 8 / 128; ++j) {
        const int unit = tid + 128 * j;
        const int row = unit / 8, chunk = unit % 8;
        const bool valid = m0 + row < p.m;
        const int8_t* src =
            valid ? x + static_cast<int64_t>(m0 + row) * p.k + 16 * chunk : p.x_codes;
        CopyAsync16(SharedAddress(act + Swizzle128(row, chunk)), src, valid);
      }
      // The 8 blocks' chunks 2kt and 2kt + 1: 1 KiB contiguous each, 64 units of 16 bytes.
      const uint32_t weights = SharedAddress(w_shared + stage * kWeightStageBytes);
#pragma unroll
      for (int j = 0; j < kBlocksPerCta * 64 / 128; ++j) {
        const int unit = tid + 128 * j;
        const int64_t block = block0 + unit / 64;
        const bool valid = block < blocks;
        const uint4* src = valid ? p.w_fragments +
                                       (block * chunks_per_block + 2 * (tile_begin + kt)) * 32 +
                                       unit % 64
                                 : p.w_fragments;
        CopyAsync16(weights + unit * 16, src, valid);
      }
      CopyAsyncArriveOn(full(stage));
    }
    CopyAsyncWaitAll();
    return;
  }

  // The consumer warpgroups.
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kConsumerRegisters));
  const int consumer = tid / 128 - 1;  // channels 64 consumer .. 64 consumer + 63 of the tile
  const int warp = (tid / 32) % 4, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;
  const int block_in_cta = 4 * consumer + warp;
  const int64_t block = block0 + block_in_cta;
  const bool block_valid = block < blocks;
  // This lane quad's scale entries (rows g and g + 8 of the block), group i at entries + 8 i.
  const uint2* entries = p.w_scales + ((block_valid ? block : 0) * groups + group_begin) * 8 + g;
  uint2 entry = block_valid ? LoadScales8(entries) : make_uint2(0, 0);
  uint2 next_entry = block_valid && local_groups > 1 ? LoadScales8(entries + 8) : make_uint2(0, 0);

  // kParts (2 or 4) token parts of kTokens / kParts, each its own wgmmas (m64n(kTokens/kParts)k32):
  // each part's fold runs while the later parts' wgmmas still do.
  constexpr int kPart = S::kAccumulators / kParts;  // a part's accumulators
  constexpr int kPartTokens = kTokens / kParts;
  static_assert(kPartTokens % 8 == 0 && kPartTokens >= 16, "a part is whole 8-row atoms");
  int32_t acc[kParts][kPart];
  float partial[kParts][kPart];
#pragma unroll
  for (int h = 0; h < kParts; ++h)
#pragma unroll
    for (int i = 0; i < kPart; ++i) {
      acc[h][i] = kMagicBits;
      partial[h][i] = 0.0f;
    }

  // Tile kt's operands: its group's scale entry (the next group's is loaded a group ahead), then,
  // once the stage has landed, the unpacked weights.
  auto prepare = [&](int kt, TileOperands& o) {
    if (kt > 0 && kt % tiles_per_group == 0) {
      entry = next_entry;
      const int next = kt / tiles_per_group + 1;
      next_entry =
          block_valid && next < local_groups ? LoadScales8(entries + 8 * next) : make_uint2(0, 0);
    }
    const uint32_t zero_lo = ZeroPlus8x4(static_cast<int8_t>(entry.y & 0xff));
    const uint32_t zero_hi = ZeroPlus8x4(static_cast<int8_t>((entry.y >> 8) & 0xff));
    o.scale_lo = HalfBitsToFloat(entry.x & 0xffff);
    o.scale_hi = HalfBitsToFloat(entry.x >> 16);
    const int stage = kt % S::kStages;
    MbarrierWait(full(stage), (kt / S::kStages) & 1);
    const uint32_t w =
        SharedAddress(w_shared + stage * kWeightStageBytes + block_in_cta * 1024) + lane * 16;
    const uint4 first = LoadShared16(w), second = LoadShared16(w + 512);
    ShuffleUnpackA(first.x, first.y, lane, p.nibble_flip, zero_lo, zero_hi, o.a[0]);
    ShuffleUnpackA(first.z, first.w, lane, p.nibble_flip, zero_lo, zero_hi, o.a[1]);
    ShuffleUnpackA(second.x, second.y, lane, p.nibble_flip, zero_lo, zero_hi, o.a[2]);
    ShuffleUnpackA(second.z, second.w, lane, p.nibble_flip, zero_lo, zero_hi, o.a[3]);
  };

  // The finished group of token part `h` (every wgmma into it completed), in reference order.
  auto fold = [&](int h, float scale_lo, float scale_hi) {
#pragma unroll
    for (int i = 0; i < kPart; ++i) {
      // Accumulator 4 j + 2 r + c: channel 16 warp + g + 8 r, token 8 j + 2 t + c of the part.
      const float scale = (i % 4) < 2 ? scale_lo : scale_hi;
      const float sum = __fsub_rn(__int_as_float(acc[h][i]), kMagicFloat);
      partial[h][i] = fmaf(sum, scale, partial[h][i]);
      acc[h][i] = kMagicBits;
    }
  };
  // Pins part h's accumulators (at a wgmma fence or after a wait) and an operand set's registers
  // (the wgmmas read them until the wait that follows them).
  auto pin_part = [&](int h) {
#pragma unroll
    for (int i = 0; i < kPart; ++i) FenceRegister(acc[h][i]);
  };
  auto pin_operands = [&](TileOperands& o) {
#pragma unroll
    for (int ks = 0; ks < 4; ++ks)
#pragma unroll
      for (int r = 0; r < 4; ++r) FenceRegister(o.a[ks][r]);
  };
  auto issue = [&](int h, const TileOperands& o, uint32_t act) {
    pin_part(h);
    WgmmaFence();
    const uint32_t rows = act + h * kPartTokens * 128;  // the part's token rows (whole atoms)
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) WgmmaS8RegisterA(acc[h], o.a[ks], Descriptor(rows + 32 * ks));
    WgmmaCommit();
  };

  // Tile kt, from `cur`: every part's wgmmas (a commit group each), the next tile's operands into
  // `next` while they run, then each part's fold as soon as its group is done (the later parts'
  // wgmmas still running), and the stage's release.
  auto step = [&](int kt, TileOperands& cur, TileOperands& next) {
    const uint32_t act = SharedAddress(act_shared + (kt % S::kStages) * S::kActStageBytes);
    FenceProxyAsync();  // the landed activations (cp.async, generic proxy), for wgmma
#pragma unroll
    for (int h = 0; h < kParts; ++h) issue(h, cur, act);
    if (kt + 1 < k_tiles) prepare(kt + 1, next);
    const bool group_ends = (kt + 1) % tiles_per_group == 0;
#pragma unroll
    for (int h = 0; h < kParts; ++h) {
      WgmmaWaitPending(kParts - 1 - h);
      pin_part(h);
      if (h == kParts - 1) {
        pin_operands(cur);
        MbarrierArrive(empty(kt % S::kStages));
      }
      if (group_ends) fold(h, cur.scale_lo, cur.scale_hi);
    }
  };

  TileOperands even, odd;
  prepare(0, even);
#pragma unroll 1
  for (int kt = 0; kt < k_tiles; kt += 2) {
    step(kt, even, odd);
    if (kt + 1 < k_tiles) step(kt + 1, odd, even);
  }

  // Epilogue. Both consumers' wgmmas are done with every stage: stage the partials as token rows.
  NamedBarrier(1, 256);
  float* staging = reinterpret_cast<float*>(act_shared) + consumer * kTokens * kStagingRowFloats;
#pragma unroll
  for (int h = 0; h < kParts; ++h)
#pragma unroll
    for (int i = 0; i < kPart; ++i) {
      const int token = h * kPartTokens + 8 * (i / 4) + 2 * t + i % 2;
      const int channel = 16 * warp + g + 8 * ((i % 4) / 2);
      staging[token * kStagingRowFloats + channel] = partial[h][i];
    }
  if (consumer == 0) {  // constant barrier ids: ptxas then reserves only these
    NamedBarrier(2, 128);
  } else {
    NamedBarrier(3, 128);
  }
  // Thread c of the consumer writes channels 8 (c % 8) .. + 7 of token rows c / 8, + 16, ...
  const int c = tid % 128;
  const int64_t channel0 = static_cast<int64_t>(n_tile) * kChannels + 64 * consumer + 8 * (c % 8);
  const bool has_add = p.epilogue_add != nullptr;
  float add[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    add[e] = has_add && channel0 + e < p.n ? p.epilogue_add[channel0 + e] : 0.0f;
  }
  const bool whole_vector = p.y_vectors_aligned && channel0 + 8 <= p.n;
  Out* y = static_cast<Out*>(p.y);
  // y = round(value * s_x [+ add]) for this thread's 8 channels of token `token`.
  auto finish_row = [&](int token, const float(&raw)[8]) {
    const float x_scale = HalfBitsToFloat(p.x_scales[token]);
    float v[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] = Finish(raw[e], x_scale, add[e], has_add);
    Out* at = y + static_cast<int64_t>(token) * p.y_stride + channel0;
    if (whole_vector) {
      StoreEight(at, v);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        if (channel0 + e < p.n) Store(at + e, v[e]);
      }
    }
  };
  auto staged_row = [&](int row, float(&raw)[8]) {
    const float4* staged =
        reinterpret_cast<const float4*>(staging + row * kStagingRowFloats + 8 * (c % 8));
    const float4 lo = staged[0], hi = staged[1];
    raw[0] = lo.x, raw[1] = lo.y, raw[2] = lo.z, raw[3] = lo.w;
    raw[4] = hi.x, raw[5] = hi.y, raw[6] = hi.z, raw[7] = hi.w;
  };
  if (p.split == 1) {
#pragma unroll 1
    for (int row = c / 8; row < kTokens && m0 + row < p.m; row += 16) {
      float raw[8];
      staged_row(row, raw);
      finish_row(m0 + row, raw);
    }
    return;
  }

  // Split K: this split's float partials to split_partials; the tile's last CTA to arrive (a
  // counter per tile) adds every split's in split order and finishes. No atomics on data: the
  // result depends on the operands and the split only.
  const int64_t split_stride = static_cast<int64_t>(p.m) * p.n;
#pragma unroll 1
  for (int row = c / 8; row < kTokens && m0 + row < p.m; row += 16) {
    float raw[8];
    staged_row(row, raw);
    float* at = p.split_partials + split_index * split_stride +
                static_cast<int64_t>(m0 + row) * p.n + channel0;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      if (channel0 + e < p.n) at[e] = raw[e];
    }
  }
  __threadfence();
  NamedBarrier(1, 256);
  int32_t* counter = p.split_counters + static_cast<int64_t>(m0 / kTokens) * n_tiles + n_tile;
  if (tid == 128) *last_split = atomicAdd(counter, 1) == p.split - 1;
  NamedBarrier(1, 256);
  if (!*last_split) return;
  __threadfence();
#pragma unroll 1
  for (int row = c / 8; row < kTokens && m0 + row < p.m; row += 16) {
    const float* column = p.split_partials + static_cast<int64_t>(m0 + row) * p.n + channel0;
    float raw[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      if (channel0 + e >= p.n) {
        raw[e] = 0.0f;
        continue;
      }
      float sum = __ldcg(column + e);
      for (int s = 1; s < p.split; ++s) sum = __fadd_rn(sum, __ldcg(column + s * split_stride + e));
      raw[e] = sum;
    }
    finish_row(m0 + row, raw);
  }
  if (tid == 128) *counter = 0;  // every split has arrived: ready for the next call
#elif defined(__CUDA_ARCH__)
  asm volatile("trap;");  // built without sm_90a: wgmma does not exist here
#endif
}

template <int kTokens, int kParts, typename Out>
cudaError_t Launch(const W4A8FragmentWgmmaParams& p, cudaStream_t stream) {
  constexpr auto kernel = W4A8FragmentWgmmaKernel<kTokens, kParts, Out>;
  constexpr int smem_bytes = Shape<kTokens>::kSmemBytes;
  if (const cudaError_t error =
          OptInDynamicSharedMemory(reinterpret_cast<const void*>(kernel), smem_bytes);
      error != cudaSuccess) {
    return error;
  }
  const int64_t ctas = static_cast<int64_t>((p.m + kTokens - 1) / kTokens) *
                       static_cast<int64_t>((p.n + kChannels - 1) / kChannels);
  if (ctas > 0x7fffffff) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(ctas), static_cast<unsigned>(p.split));
  kernel<<<grid, kThreads, smem_bytes, stream>>>(p);
  return cudaGetLastError();
}

template <int kTokens, int kParts>
cudaError_t LaunchForOutput(const W4A8FragmentWgmmaParams& p, cudaStream_t stream) {
  return p.y_is_bf16 ? Launch<kTokens, kParts, __nv_bfloat16>(p, stream)
                     : Launch<kTokens, kParts, float>(p, stream);
}

}  // namespace

cudaError_t LaunchW4A8FragmentWgmma(const W4A8FragmentWgmmaParams& p, cudaStream_t stream) {
  if (p.m == 0 || p.n == 0) return cudaSuccess;
  if (p.tokens_per_tile == 64) {
    return p.token_parts == 4 ? LaunchForOutput<64, 4>(p, stream)
                              : LaunchForOutput<64, 2>(p, stream);
  }
  return p.token_parts == 4 ? LaunchForOutput<128, 4>(p, stream)
                            : LaunchForOutput<128, 2>(p, stream);
}

}  // namespace flatfleet::cuda::internal
