// Prefill W4A8 GEMM on Hopper's warpgroup MMA (wgmma.mma_async m64n128k32 s8, sm_90a only).
// Selected by W4A8PrefillKernel::kWgmmaExperimental, and by kAuto (so the engine) on Hopper when
// its preconditions hold: measured 1.3-1.5x the mma.sync kernel (w4a8_prefill_gemm.cu).
//
// Same numerics as the mma.sync kernel and the CPU reference: exact int32 sums per scale group
// (the tensor cores accumulate onto the bits of 1.5 * 2^23, see W4A8PrefillParams::
// group_sums_below_2_22, which this kernel requires), folded in ascending group order with
// fmaf(float(sum), s_w, partial), then y = partial * s_x (+ add), one rounding each.
//
// One block per 128 x 128 outputs, two warpgroups (rows 0-63 and 64-127 of the tile, all 128
// columns each: 64 int32 sums and 64 float partials per thread). K moves in tiles of 128 (whole
// tiles only: k and group_size multiples of 128, so a tile lies in one group) through a ring of
// four cp.async stages: the activation tile goes straight into wgmma's K-major 128-byte-swizzled
// layout (rows of 128 bytes, 16-byte chunk c of row r at chunk c ^ (r % 8), 8-row atoms of 1024
// bytes), the packed INT4 tile (64 bytes a row) into a plain buffer; each thread then unpacks the
// very chunks it copied (so no barrier between the copy and the unpack) to INT8 in the same
// swizzled layout, alternating between two buffers, and fences its generic-proxy writes for the
// async proxy. Each warpgroup issues tile kt's four m64n128k32 wgmmas, unpacks tile kt + 1 while
// they run, waits, folds; one barrier per tile. No warp specialisation and the fold does not
// overlap the MMAs: a first version to measure. kWgmma64x128TwoPerSm runs the same code with one
// warpgroup and 64 x 128 outputs a block, two blocks per SM, so that one block's fold, unpack and
// barrier overlap the other's wgmmas (each block unpacks its own weight tiles).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <mutex>
#include <vector>

#include "kernels/cuda/int4_unpack.h"
#include "kernels/cuda/w4a8_mma_sync_tile.cuh"
#include "kernels/cuda/w4a8_prefill_gemm_launch.h"
#include "kernels/cuda/warp_mma.cuh"
#include "kernels/cuda/wgmma_device.cuh"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kBM = 128, kBN = 128, kBK = 128;
constexpr int kThreads = 256;  // two warpgroups
constexpr int kStages = 4;
constexpr int kTileBytes = 128 * 128;   // an activation stage or an unpacked weight tile
constexpr int kPackedBytes = 128 * 64;  // a packed INT4 weight tile
// 1024 bytes of slack to align the swizzled buffers to their 1024-byte atoms.
constexpr int kScaleBytes = 2 * kBN * 4;  // the float scales of the tile's columns, two groups
constexpr int kSmemBytes =
    1024 + kStages * (kTileBytes + kPackedBytes) + 2 * kTileBytes + kScaleBytes;
// The one-warpgroup, 64-row block: half the activation stages. 100,352 bytes: two blocks fit.
constexpr int kSmemBytes64 =
    1024 + kStages * (kTileBytes / 2 + kPackedBytes) + 2 * kTileBytes + kScaleBytes;
constexpr int kRasterGroupM = 8;
// The exact magic-number int32 -> float32 conversion and the epilogue's roundings and stores are
// the mma.sync kernel's (w4a8_mma_sync_tile.cuh).
using w4a8_mma::Finish;
using w4a8_mma::kMagicBits;
using w4a8_mma::kMagicFloat;
using w4a8_mma::Store;
using w4a8_mma::StorePair;
using namespace wgmma;  // NOLINT: the shared Hopper helpers

__device__ __forceinline__ float HalfBitsToFloat(uint32_t bits) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits & 0xffffu)));
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// d (64 x 128 s32, this thread's 64) += A (64 x 32 s8) * B (32 x 128 s8), both from shared memory.
__device__ __forceinline__ void WgmmaS8(int32_t (&d)[64], uint64_t a, uint64_t b) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "
      "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "
      "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "
      "%56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p;\n"
      "}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]),
        "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]),
        "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]),
        "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]),
        "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]),
        "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]),
        "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]),
        "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]),
        "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]),
        "+r"(d[63])
      : "l"(a), "l"(b), "r"(1));
}
#endif

// kWarpgroups = 2: one block of 128 x 128 outputs per SM (kWgmmaExperimental). kWarpgroups = 1:
// blocks of 64 x 128 outputs and one warpgroup, two per SM (kWgmma64x128TwoPerSm), which no
// barrier couples: one block's fold, unpack and barrier run while the other's wgmmas do.
template <typename Out, int kWarpgroups>
__global__ void __launch_bounds__(128 * kWarpgroups, 2 / kWarpgroups)
    W4A8PrefillWgmmaKernel(const W4A8PrefillParams p) {
  constexpr int kRows = 64 * kWarpgroups, kBlockThreads = 128 * kWarpgroups;
  constexpr int kATileBytes = kRows * 128;
  constexpr int kPackedPerThread = kBN * 4 / kBlockThreads;  // 16-byte packed chunks (2 or 4)
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) uint8_t shared_raw[];
  uint8_t* shared = shared_raw + ((1024 - (SharedAddress(shared_raw) & 1023)) & 1023);
  uint8_t* a_shared = shared;                          // kStages x kRows x 128 B, swizzled
  uint8_t* b_shared = shared + kStages * kATileBytes;  // 2 x 16 KiB, swizzled INT8
  uint8_t* packed_shared = b_shared + 2 * kTileBytes;  // kStages x 8 KiB, packed INT4
  // Scales of the tile's 128 columns, by group parity (written at a group's first tile, read at
  // its last; the parity keeps the next group's writes off a slower warpgroup's reads). Through
  // shared memory rather than 32 registers a thread: their addresses alone made this spill.
  float* scale_shared = reinterpret_cast<float*>(packed_shared + kStages * kPackedBytes);

  // Grouped rasterisation, as the mma.sync kernel.
  const int m_tiles = (p.m + kRows - 1) / kRows, n_tiles = (p.n + kBN - 1) / kBN;
  const int linear = blockIdx.x;
  const int per_group = kRasterGroupM * n_tiles;
  const int first_m = (linear / per_group) * kRasterGroupM;
  const int group_rows = min(m_tiles - first_m, kRasterGroupM);
  const int local = linear % per_group;
  const int m0 = (first_m + local % group_rows) * kRows;
  const int n0 = (local / group_rows) * kBN;

  const int tid = threadIdx.x;
  const int warpgroup = tid / 128, warp_in_group = (tid / 32) % 4, lane = tid % 32;
  const int t = lane % 4;
  const int groups = p.k / p.group_size;
  const int tiles_per_group = p.group_size / kBK;
  const int k_tiles = p.k / kBK;
  const int64_t w_row_bytes = p.k / 2;
  const uint32_t flip = p.w_unsigned_nibbles ? kUnsignedNibbleFlip : kSignedNibbleFlip;

  // Tile kt into ring stage kt % kStages. Thread tid copies activation chunks tid + T j (row
  // (tid + T j) / 8, chunk tid % 8; T = kBlockThreads, kRows * 8 / T = 4 of them) and packed
  // weight chunks of rows tid / 4 + (T / 4) j (chunk tid % 4); rows past m or n are zero-filled.
  auto load_tile = [&](int kt) {
    const int k0 = kt * kBK;
    uint8_t* a = a_shared + (kt % kStages) * kATileBytes;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int i = tid + kBlockThreads * j;
      const int row = i / 8, chunk = i % 8;
      const bool valid = m0 + row < p.m;
      const int8_t* src =
          valid ? p.x_codes + static_cast<int64_t>(m0 + row) * p.k + k0 + chunk * 16 : p.x_codes;
      CopyAsync16(SharedAddress(a + Swizzle128(row, chunk)), src, valid);
    }
    uint8_t* b = packed_shared + (kt % kStages) * kPackedBytes;
    const auto* w = reinterpret_cast<const uint8_t*>(p.w_words);
#pragma unroll
    for (int j = 0; j < kPackedPerThread; ++j) {
      const int row = tid / 4 + (kBlockThreads / 4) * j, chunk = tid % 4;
      const bool valid = n0 + row < p.n;
      const uint8_t* src =
          valid ? w + static_cast<int64_t>(n0 + row) * w_row_bytes + k0 / 2 + chunk * 16 : w;
      CopyAsync16(SharedAddress(b + row * 64 + chunk * 16), src, valid);
    }
  };

  int32_t acc[64];
  float partial[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) {
    acc[i] = kMagicBits;
    partial[i] = 0.0f;
  }
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) load_tile(s);
    CopyAsyncCommit();
  }

  // Tile kt's weights unpacked into buffer kt % 2 (and, at a group's first tile, the group's scales
  // into shared memory): waits for this thread's copies of tile kt, reads only them.
  auto prepare_tile = [&](int kt) {
    const int g = kt / tiles_per_group;
    // Zero points of the weight rows this thread unpacks (issued before the wait).
    uint32_t zero_plus_8[kPackedPerThread];
#pragma unroll
    for (int j = 0; j < kPackedPerThread; ++j) {
      const int n = n0 + tid / 4 + (kBlockThreads / 4) * j;
      zero_plus_8[j] = ZeroPlus8x4(p.w_zero_points != nullptr && n < p.n
                                       ? p.w_zero_points[static_cast<int64_t>(n) * groups + g]
                                       : 0);
    }
    if (kt % tiles_per_group == 0 && tid < kBN) {  // the group's scales, for its fold
      const int n = n0 + tid;
      scale_shared[(g % 2) * kBN + tid] =
          n < p.n ? HalfBitsToFloat(p.w_scales[static_cast<int64_t>(n) * groups + g]) : 0.0f;
    }
    // Tiles up to kt have landed: of the kStages - 1 + kt groups committed so far (one per tile),
    // at most kStages - 2 are pending.
    CopyAsyncWait<kStages - 2>();
    const uint8_t* src = packed_shared + (kt % kStages) * kPackedBytes;
    uint8_t* dst = b_shared + (kt % 2) * kTileBytes;
#pragma unroll
    for (int j = 0; j < kPackedPerThread; ++j) {
      const int row = tid / 4 + (kBlockThreads / 4) * j, q = tid % 4;
      const uint4 words = *reinterpret_cast<const uint4*>(src + row * 64 + q * 16);
      // Word i of the chunk holds K elements 8i..8i+7 of its 32: low nibbles 8i..8i+3.
      uint4 lo, hi;  // INT8 chunks 2q (K 32q..32q+15) and 2q + 1
      lo.x = CenteredInt8x4(words.x & 0x0f0f0f0fu, flip, zero_plus_8[j]);
      lo.y = CenteredInt8x4((words.x >> 4) & 0x0f0f0f0fu, flip, zero_plus_8[j]);
      lo.z = CenteredInt8x4(words.y & 0x0f0f0f0fu, flip, zero_plus_8[j]);
      lo.w = CenteredInt8x4((words.y >> 4) & 0x0f0f0f0fu, flip, zero_plus_8[j]);
      hi.x = CenteredInt8x4(words.z & 0x0f0f0f0fu, flip, zero_plus_8[j]);
      hi.y = CenteredInt8x4((words.z >> 4) & 0x0f0f0f0fu, flip, zero_plus_8[j]);
      hi.z = CenteredInt8x4(words.w & 0x0f0f0f0fu, flip, zero_plus_8[j]);
      hi.w = CenteredInt8x4((words.w >> 4) & 0x0f0f0f0fu, flip, zero_plus_8[j]);
      *reinterpret_cast<uint4*>(dst + Swizzle128(row, 2 * q)) = lo;
      *reinterpret_cast<uint4*>(dst + Swizzle128(row, 2 * q + 1)) = hi;
    }
  };

  prepare_tile(0);
  FenceProxyAsync();
  __syncthreads();
  // Iteration kt: refill the ring, issue tile kt's wgmmas, unpack tile kt + 1 while they run,
  // wait, fold. At its start every thread has prepared tile kt and fenced it, and every wgmma of
  // tile kt - 1 has completed (the barrier that ends each iteration).
  for (int kt = 0; kt < k_tiles; ++kt) {
    // Stage (kt - 1) % kStages: tile kt - 1's activations (read by its completed wgmmas) and
    // packed weights (unpacked an iteration ago).
    if (kt + kStages - 1 < k_tiles) load_tile(kt + kStages - 1);
    CopyAsyncCommit();
    const uint32_t a_base =
        SharedAddress(a_shared + (kt % kStages) * kATileBytes + warpgroup * 64 * 128);
    const uint32_t b_base = SharedAddress(b_shared + (kt % 2) * kTileBytes);
#pragma unroll
    for (int i = 0; i < 64; ++i) FenceRegister(acc[i]);
    WgmmaFence();
#pragma unroll
    for (int ks = 0; ks < kBK / 32; ++ks) {
      WgmmaS8(acc, Descriptor(a_base + ks * 32), Descriptor(b_base + ks * 32));
    }
    WgmmaCommit();
    // Buffer (kt + 1) % 2 was last read by tile kt - 1's wgmmas, completed.
    if (kt + 1 < k_tiles) prepare_tile(kt + 1);
    WgmmaWaitAll();
#pragma unroll
    for (int i = 0; i < 64; ++i) FenceRegister(acc[i]);
    if ((kt + 1) % tiles_per_group == 0) {  // fold the finished group (reference order)
      const int g = kt / tiles_per_group;
      const float* scales = scale_shared + (g % 2) * kBN + 2 * t;
#pragma unroll
      for (int i = 0; i < 64; ++i) {
        const float scale = scales[8 * (i / 4) + i % 2];
        const float sum = __fsub_rn(__int_as_float(acc[i]), kMagicFloat);
        partial[i] = fmaf(sum, scale, partial[i]);
        acc[i] = kMagicBits;
      }
    }
    FenceProxyAsync();  // tile kt + 1's unpacked weights and landed activations, for wgmma
    __syncthreads();
  }
  CopyAsyncWait<0>();

  // Epilogue: thread rows r, r + 8 (r = 64 warpgroup + 16 warp + lane / 4), columns 8 i4 + 2t +
  // {0,1}.
  const bool has_add = p.epilogue_add != nullptr;
  Out* y = static_cast<Out*>(p.y);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int m = m0 + warpgroup * 64 + warp_in_group * 16 + lane / 4 + 8 * h;
    if (m >= p.m) continue;
    const float x_scale = HalfBitsToFloat(p.x_scales[m]);
#pragma unroll
    for (int i4 = 0; i4 < 16; ++i4) {
      const int n = n0 + 8 * i4 + 2 * t;
      const float add0 = has_add && n < p.n ? p.epilogue_add[n] : 0.0f;
      const float add1 = has_add && n + 1 < p.n ? p.epilogue_add[n + 1] : 0.0f;
      const float v0 = Finish(partial[4 * i4 + 2 * h], x_scale, add0, has_add);
      const float v1 = Finish(partial[4 * i4 + 2 * h + 1], x_scale, add1, has_add);
      Out* at = y + static_cast<int64_t>(m) * p.y_stride + n;
      if (p.y_pairs_aligned && n + 1 < p.n) {
        StorePair(at, v0, v1);
      } else {
        if (n < p.n) Store(at, v0);
        if (n + 1 < p.n) Store(at + 1, v1);
      }
    }
  }
#elif defined(__CUDA_ARCH__)
  asm volatile("trap;");  // built without sm_90a: wgmma does not exist here
#endif
}

// kWgmmaWarpSpecialized: 384 threads. Warpgroup 0 produces: it copies tile kt's activations and
// packed weights (cp.async, kWsLookahead tiles ahead), waits for its own copies of tile kt,
// writes the tile's group scales, unpacks the INT4 weights into the stage's swizzled INT8 buffer,
// fences for the async proxy and arrives on full[kt % kWsStages] (128 arrivals). Warpgroups 1 and
// 2 consume rows 0-63 and 64-127 of the 128 x 128 tile: wait full, issue the tile's four wgmmas,
// wgmma.wait_group 1 (tile kt - 1 done), fold the group that tile kt - 1 ended (if it did) while
// tile kt's wgmmas run, then arrive on empty[(kt - 1) % kWsStages] (256 arrivals). Sums alternate
// between two sets by group parity so the fold of group g - 1 and group g's wgmmas never share
// registers; setmaxnreg gives the consumers 208 registers (2 x 64 sums + 64 partials) and the
// producer 88. ptxas (CUDA 13) still reports the wgmmas serialised (C7514) in this kernel: it
// does not prove the fold's set complete after wait_group 1, so the overlap may not happen. The
// producer refills the stage of tile kt + kWsLookahead - kWsStages = kt - 2, released by the
// consumers in their iteration kt - 1, which needs only full[kt - 1]: no cycle. Same fold order
// (ascending groups, fmaf) and so the same bits.
constexpr int kWsStages = 5;
constexpr int kWsLookahead = kWsStages - 2;
constexpr int kWsThreads = 384;
// 128 x 88 + 256 x 208 = 64,512 of the SM's 65,536 (ptxas: no spills with these; 56 spilled).
constexpr int kWsProducerRegisters = 88, kWsConsumerRegisters = 208;
constexpr int kWsSmemBytes =
    1024 + kWsStages * (2 * kTileBytes + kPackedBytes + kBN * 4) + 2 * kWsStages * 8;

template <typename Out>
__global__ void __launch_bounds__(kWsThreads, 1)
    W4A8PrefillWgmmaWsKernel(const W4A8PrefillParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) uint8_t shared_raw[];
  uint8_t* shared = shared_raw + ((1024 - (SharedAddress(shared_raw) & 1023)) & 1023);
  uint8_t* a_shared = shared;                                  // stages x 16 KiB, swizzled
  uint8_t* b_shared = a_shared + kWsStages * kTileBytes;       // stages x 16 KiB, swizzled INT8
  uint8_t* packed_shared = b_shared + kWsStages * kTileBytes;  // stages x 8 KiB, packed INT4
  float* scale_shared = reinterpret_cast<float*>(packed_shared + kWsStages * kPackedBytes);
  // full[s] at bars + 8 s, empty[s] at bars + 8 (kWsStages + s).
  const uint32_t bars = SharedAddress(scale_shared + kWsStages * kBN);

  const int m_tiles = (p.m + kBM - 1) / kBM, n_tiles = (p.n + kBN - 1) / kBN;
  const int linear = blockIdx.x;
  const int per_group = kRasterGroupM * n_tiles;
  const int first_m = (linear / per_group) * kRasterGroupM;
  const int group_rows = min(m_tiles - first_m, kRasterGroupM);
  const int local = linear % per_group;
  const int m0 = (first_m + local % group_rows) * kBM;
  const int n0 = (local / group_rows) * kBN;

  const int tid = threadIdx.x;
  const int groups = p.k / p.group_size;
  const int tiles_per_group = p.group_size / kBK;
  const int k_tiles = p.k / kBK;

  if (tid == 0) {
    for (int s = 0; s < kWsStages; ++s) {
      MbarrierInit(bars + 8 * s, 128);
      MbarrierInit(bars + 8 * (kWsStages + s), 256);
    }
    FenceMbarrierInit();
  }
  __syncthreads();

  if (tid < 128) {  // the producer warpgroup
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kWsProducerRegisters));
    const int64_t w_row_bytes = p.k / 2;
    const uint32_t flip = p.w_unsigned_nibbles ? kUnsignedNibbleFlip : kSignedNibbleFlip;
    // Activation chunks tid + 128 j (row (tid + 128 j) / 8, chunk tid % 8), packed weight chunks
    // of rows tid / 4 + 32 j (chunk tid % 4); rows past m or n are zero-filled.
    auto load_tile = [&](int kt) {
      const int s = kt % kWsStages, k0 = kt * kBK;
      uint8_t* a = a_shared + s * kTileBytes;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int i = tid + 128 * j;
        const int row = i / 8, chunk = i % 8;
        const bool valid = m0 + row < p.m;
        const int8_t* src =
            valid ? p.x_codes + static_cast<int64_t>(m0 + row) * p.k + k0 + chunk * 16 : p.x_codes;
        CopyAsync16(SharedAddress(a + Swizzle128(row, chunk)), src, valid);
      }
      uint8_t* b = packed_shared + s * kPackedBytes;
      const auto* w = reinterpret_cast<const uint8_t*>(p.w_words);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int row = tid / 4 + 32 * j, chunk = tid % 4;
        const bool valid = n0 + row < p.n;
        const uint8_t* src =
            valid ? w + static_cast<int64_t>(n0 + row) * w_row_bytes + k0 / 2 + chunk * 16 : w;
        CopyAsync16(SharedAddress(b + row * 64 + chunk * 16), src, valid);
      }
    };
#pragma unroll 1
    for (int kt = 0; kt < kWsLookahead; ++kt) {
      if (kt < k_tiles) load_tile(kt);
      CopyAsyncCommit();
    }
#pragma unroll 1
    for (int kt = 0; kt < k_tiles; ++kt) {
      const int next = kt + kWsLookahead;
      if (next < k_tiles) {
        // Its stage last held tile next - kWsStages: wait until the consumers released it.
        const int previous = next - kWsStages;
        if (previous >= 0) {
          MbarrierWait(bars + 8 * (kWsStages + previous % kWsStages), (previous / kWsStages) & 1);
        }
        load_tile(next);
      }
      CopyAsyncCommit();
      const int s = kt % kWsStages, g = kt / tiles_per_group;
      scale_shared[s * kBN + tid] =
          n0 + tid < p.n ? HalfBitsToFloat(p.w_scales[static_cast<int64_t>(n0 + tid) * groups + g])
                         : 0.0f;
      // Of the kWsLookahead + kt + 1 groups committed, tile kt's is number kt.
      CopyAsyncWait<kWsLookahead>();
      const uint8_t* src = packed_shared + s * kPackedBytes;
      uint8_t* dst = b_shared + s * kTileBytes;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int row = tid / 4 + 32 * j, q = tid % 4;
        const int n = n0 + row;
        const uint32_t zero_plus_8 =
            ZeroPlus8x4(p.w_zero_points != nullptr && n < p.n
                            ? p.w_zero_points[static_cast<int64_t>(n) * groups + g]
                            : 0);
        const uint4 words = *reinterpret_cast<const uint4*>(src + row * 64 + q * 16);
        uint4 lo, hi;  // INT8 chunks 2q (K 32q..32q+15) and 2q + 1
        lo.x = CenteredInt8x4(words.x & 0x0f0f0f0fu, flip, zero_plus_8);
        lo.y = CenteredInt8x4((words.x >> 4) & 0x0f0f0f0fu, flip, zero_plus_8);
        lo.z = CenteredInt8x4(words.y & 0x0f0f0f0fu, flip, zero_plus_8);
        lo.w = CenteredInt8x4((words.y >> 4) & 0x0f0f0f0fu, flip, zero_plus_8);
        hi.x = CenteredInt8x4(words.z & 0x0f0f0f0fu, flip, zero_plus_8);
        hi.y = CenteredInt8x4((words.z >> 4) & 0x0f0f0f0fu, flip, zero_plus_8);
        hi.z = CenteredInt8x4(words.w & 0x0f0f0f0fu, flip, zero_plus_8);
        hi.w = CenteredInt8x4((words.w >> 4) & 0x0f0f0f0fu, flip, zero_plus_8);
        *reinterpret_cast<uint4*>(dst + Swizzle128(row, 2 * q)) = lo;
        *reinterpret_cast<uint4*>(dst + Swizzle128(row, 2 * q + 1)) = hi;
      }
      FenceProxyAsync();  // the landed activations and the unpacked weights, for wgmma
      MbarrierArrive(bars + 8 * s);
    }
    CopyAsyncWait<0>();
    return;
  }

  // The consumer warpgroups.
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kWsConsumerRegisters));
  const int consumer = tid / 128 - 1;  // rows 64 consumer .. 64 consumer + 63 of the tile
  const int warp_in_group = (tid / 32) % 4, lane = tid % 32;
  const int t = lane % 4;

  int32_t acc_even[64], acc_odd[64];  // the sums of the even and of the odd groups
  float partial[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) {
    acc_even[i] = kMagicBits;
    acc_odd[i] = kMagicBits;
    partial[i] = 0.0f;
  }
  // Folds the finished sums in `acc` (every wgmma into it completed) with the scales stage `s`
  // holds, and resets them.
  auto fold = [&](int32_t(&acc)[64], int s) {
#pragma unroll
    for (int i = 0; i < 64; ++i) FenceRegister(acc[i]);
    const float* scales = scale_shared + s * kBN + 2 * t;
#pragma unroll
    for (int i = 0; i < 64; ++i) {
      const float scale = scales[8 * (i / 4) + i % 2];
      const float sum = __fsub_rn(__int_as_float(acc[i]), kMagicFloat);
      partial[i] = fmaf(sum, scale, partial[i]);
      acc[i] = kMagicBits;
    }
  };
  // Tile kt's wgmmas into `acc`; then, once tile kt - 1's are done, the fold of `other` when tile
  // kt - 1 ended a group (`fold_other`), and the release of tile kt - 1's stage. No register
  // fence on `acc` before the wgmmas: tile kt - 1's may still be writing it.
  auto step = [&](int kt, int32_t(&acc)[64], int32_t(&other)[64], bool fold_other) {
    const int s = kt % kWsStages;
    MbarrierWait(bars + 8 * s, (kt / kWsStages) & 1);
    const uint32_t a_base = SharedAddress(a_shared + s * kTileBytes + consumer * 64 * 128);
    const uint32_t b_base = SharedAddress(b_shared + s * kTileBytes);
    WgmmaFence();
#pragma unroll
    for (int ks = 0; ks < kBK / 32; ++ks) {
      WgmmaS8(acc, Descriptor(a_base + ks * 32), Descriptor(b_base + ks * 32));
    }
    WgmmaCommit();
    WgmmaWaitAllButOne();
    if (kt > 0) {
      const int previous = (kt - 1) % kWsStages;
      if (fold_other) fold(other, previous);
      MbarrierArrive(bars + 8 * (kWsStages + previous));
    }
  };
#pragma unroll 1
  for (int g = 0, kt = 0; g < groups; g += 2) {
#pragma unroll 1
    for (int j = 0; j < tiles_per_group; ++j, ++kt) step(kt, acc_even, acc_odd, j == 0 && g > 0);
    if (g + 1 == groups) break;
#pragma unroll 1
    for (int j = 0; j < tiles_per_group; ++j, ++kt) step(kt, acc_odd, acc_even, j == 0);
  }
  WgmmaWaitAll();
  if ((groups - 1) % 2 == 0) {
    fold(acc_even, (k_tiles - 1) % kWsStages);
  } else {
    fold(acc_odd, (k_tiles - 1) % kWsStages);
  }

  const bool has_add = p.epilogue_add != nullptr;
  Out* y = static_cast<Out*>(p.y);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int m = m0 + consumer * 64 + warp_in_group * 16 + lane / 4 + 8 * h;
    if (m >= p.m) continue;
    const float x_scale = HalfBitsToFloat(p.x_scales[m]);
#pragma unroll
    for (int i4 = 0; i4 < 16; ++i4) {
      const int n = n0 + 8 * i4 + 2 * t;
      const float add0 = has_add && n < p.n ? p.epilogue_add[n] : 0.0f;
      const float add1 = has_add && n + 1 < p.n ? p.epilogue_add[n + 1] : 0.0f;
      const float v0 = Finish(partial[4 * i4 + 2 * h], x_scale, add0, has_add);
      const float v1 = Finish(partial[4 * i4 + 2 * h + 1], x_scale, add1, has_add);
      Out* at = y + static_cast<int64_t>(m) * p.y_stride + n;
      if (p.y_pairs_aligned && n + 1 < p.n) {
        StorePair(at, v0, v1);
      } else {
        if (n < p.n) Store(at, v0);
        if (n + 1 < p.n) Store(at + 1, v1);
      }
    }
  }
#elif defined(__CUDA_ARCH__)
  asm volatile("trap;");  // built without sm_90a: wgmma does not exist here
#endif
}

// Opts `kernel` in to `smem_bytes` of dynamic shared memory (once per device and kernel), then
// launches one block per rows x 128 tile.
template <auto kernel, int smem_bytes, int rows = kBM, int threads = kThreads>
cudaError_t OptInAndLaunch(const W4A8PrefillParams& p, cudaStream_t stream) {
  if (const cudaError_t error =
          w4a8_mma::OptInDynamicSharedMemory(reinterpret_cast<const void*>(kernel), smem_bytes);
      error != cudaSuccess) {
    return error;
  }
  const int64_t blocks =
      static_cast<int64_t>((p.m + rows - 1) / rows) * static_cast<int64_t>((p.n + kBN - 1) / kBN);
  if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;
  kernel<<<static_cast<unsigned>(blocks), threads, smem_bytes, stream>>>(p);
  return cudaGetLastError();
}

template <typename Out>
cudaError_t LaunchForOutput(const W4A8PrefillParams& p, cudaStream_t stream) {
  if (p.variant == W4A8PrefillVariant::kWgmmaWarpSpecialized) {
    return OptInAndLaunch<W4A8PrefillWgmmaWsKernel<Out>, kWsSmemBytes, kBM, kWsThreads>(p, stream);
  }
  if (p.variant == W4A8PrefillVariant::kWgmma64x128TwoPerSm) {
    return OptInAndLaunch<W4A8PrefillWgmmaKernel<Out, 1>, kSmemBytes64, 64, 128>(p, stream);
  }
  return OptInAndLaunch<W4A8PrefillWgmmaKernel<Out, 2>, kSmemBytes>(p, stream);
}

}  // namespace

cudaError_t LaunchW4A8PrefillWgmma(const W4A8PrefillParams& p, cudaStream_t stream) {
  if (p.m == 0 || p.n == 0) return cudaSuccess;
  return p.y_is_bf16 ? LaunchForOutput<__nv_bfloat16>(p, stream)
                     : LaunchForOutput<float>(p, stream);
}

}  // namespace flatfleet::cuda::internal
