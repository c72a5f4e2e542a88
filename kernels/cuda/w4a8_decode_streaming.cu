// The streaming decode W4A8 kernel (W4A8DecodeKernel::kStreaming): the same numerics as the
// kernels of w4a8_decode_gemm.cu (read its header comment first), built to keep many more weight
// bytes in flight per SM.
//
// A CTA of kWarps warps owns one block of 8 output channels and walks K in stages of kWarps *
// kWindowsPerWarp windows of 128 elements: in a stage, warp w takes the kWindowsPerWarp
// consecutive windows starting at kWindowsPerWarp * w (so each warp reads 8 rows x 256
// contiguous bytes). Each lane issues the 16-byte loads of all its windows of the next stage
// (kWindowsPerWarp independent loads straight into registers) before it multiplies those of the
// current stage: 2 * kWindowsPerWarp * 16 bytes per lane, up to 32 KB per CTA, in flight
// (2 CTAs per SM for m > 8, 3 for m <= 8, whose variant drops the activation rows 8..15).
//
// MMAs as in the ring kernel: lane (g, t) holds chunk t (K elements 32t .. 32t + 31 of a
// window) of channel g; MMA s takes word s of it as B (low nibbles: elements 8s + 0..3, high:
// 8s + 4..7) and the same activation bytes of rows g, g + 8 as A. Each window's exact int32 sum
// goes to shared memory; after the stage's barrier, 128 folding threads (warps 0..3, one per C
// element: 16 rows x 8 columns) add the stage's windows in ascending K order into their int32
// group sum and fold each finished group as the reference does: partial = fmaf(float(sum),
// s_w[n, g], partial). The exchange is double-buffered by stage parity, so one barrier per stage
// suffices (stage s + 2 rewrites buffer s % 2 only after barrier s + 1, which the folders reach
// after reading it). No workspace; only the folders store.
//
// The CTA's weight scales and zero points (8 channels x groups, <= kW4A8StreamingMaxGroups) are
// copied into shared memory once, while the first stage's weights are in flight. Activations
// (a few KB, shared by every CTA) are read through L1, one window ahead.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/decode_gemm_device.cuh"
#include "kernels/cuda/int4_unpack.h"
#include "kernels/cuda/w4a8_decode_gemm_launch.h"

namespace flatfleet::cuda::internal {
namespace {

using namespace decode_gemm;  // NOLINT: the shared device helpers

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kWindowsPerWarp = 4;
constexpr int kStageWindows = kWarps * kWindowsPerWarp;
constexpr int kWindow = 128;   // K elements per window: 4 chunks of 32, one per lane of a quad
constexpr int kFolders = 128;  // one per C element of the 16 x 8 tile
constexpr int kMaxGroups = kW4A8StreamingMaxGroups;
static_assert(8 * kMaxGroups % kThreads == 0, "the table fill's per-thread count");

// CTAs of 256 threads resident per SM: 2 (<= 128 registers) with activation rows 8..15 (m > 8),
// 3 (<= 85 registers) without them, where the A fragment's rows g + 8 are constant zeros: 32 or
// 48 KB of weights issued ahead per SM.
constexpr int ResidentCtas(bool high_rows) { return high_rows ? 2 : 3; }

template <bool kHighRows, typename Out>
__global__ void __launch_bounds__(kThreads, ResidentCtas(kHighRows))
    W4A8DecodeStreamingKernel(const W4A8DecodeParams p) {
  __shared__ __align__(16) int4 exchange[2][kStageWindows][32];  // 32 KB
  __shared__ uint16_t scale_table[8 * kMaxGroups];               // [channel][group], FP16 bits
  __shared__ int8_t zero_table[8 * kMaxGroups];                  // [channel][group]

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int g = lane / 4, t = lane % 4;
  const int64_t n_base = static_cast<int64_t>(blockIdx.x) * 8;  // < n: the grid
  const int groups = p.k / p.group_size;
  const int windows = p.k / kWindow;  // group_size % 128 == 0, so k % 128 == 0
  const int windows_per_group = p.group_size / kWindow;
  const int stages = (windows + kStageWindows - 1) / kStageWindows;
  const uint32_t flip = p.w_unsigned_nibbles ? kUnsignedNibbleFlip : kSignedNibbleFlip;
  const bool has_zero_points = p.w_zero_points != nullptr;

  // This lane's weight row (channel n_base + g) at its chunk t; rows >= n read nothing.
  const bool w_valid = n_base + g < p.n;
  const uint32_t* w_row = p.w_words + (w_valid ? n_base + g : 0) * (p.k / 8) + 4 * t;
  // Activation rows g and g + 8 at byte 32t (row 0 stands in for rows >= m, never read).
  const bool x_valid_lo = g < p.m, x_valid_hi = kHighRows && g + 8 < p.m;
  const int8_t* x_lo = p.x_codes + static_cast<int64_t>(x_valid_lo ? g : 0) * p.k + 32 * t;
  const int8_t* x_hi = p.x_codes + static_cast<int64_t>(x_valid_hi ? g + 8 : 0) * p.k + 32 * t;

  // Window j of this warp in `stage` (may be past the last window: then nothing is read).
  auto window_of = [&](int stage, int j) {
    return stage * kStageWindows + warp * kWindowsPerWarp + j;
  };
  auto load_stage = [&](int stage, uint4(&w)[kWindowsPerWarp]) {
#pragma unroll
    for (int j = 0; j < kWindowsPerWarp; ++j) {
      const int window = window_of(stage, j);
      w[j] = w_valid && window < windows
                 ? LoadStreaming16(w_row + static_cast<int64_t>(window) * 16)
                 : make_uint4(0, 0, 0, 0);
    }
  };
  auto load_activations = [&](int window, uint32_t(&lo)[8], uint32_t(&hi)[8]) {
    const bool valid = window < windows;
    const int64_t kw = valid ? static_cast<int64_t>(window) * kWindow : 0;
    LoadActivation32(valid && x_valid_lo, x_lo + kw, lo);
    if (kHighRows) {
      LoadActivation32(valid && x_valid_hi, x_hi + kw, hi);
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) hi[i] = 0;  // rows >= 8 >= m
    }
  };

  uint4 current[kWindowsPerWarp];
  load_stage(0, current);  // in flight while the tables are filled

  // The CTA's scales and zero points: channels n_base .. n_base + 7 are contiguous rows of the
  // [n, groups] arrays. Zeros past n (those columns are never stored). All of a thread's loads
  // are issued before its first store, so the fill costs one memory latency, not one per
  // element.
  {
    constexpr int kFillPerThread = 8 * kMaxGroups / kThreads;
    const int64_t begin = n_base * groups, end = static_cast<int64_t>(p.n) * groups;
    uint32_t scale_bits[kFillPerThread], zero_bits[kFillPerThread];
#pragma unroll
    for (int r = 0; r < kFillPerThread; ++r) {
      const int i = threadIdx.x + r * kThreads;
      const bool valid = i < 8 * groups && begin + i < end;
      scale_bits[r] = valid ? LoadU16(p.w_scales + begin + i) : 0u;
      zero_bits[r] = valid && has_zero_points ? LoadU8(p.w_zero_points + begin + i) : 0u;
    }
#pragma unroll
    for (int r = 0; r < kFillPerThread; ++r) {
      const int i = threadIdx.x + r * kThreads;
      if (i < 8 * groups) {
        scale_table[i] = static_cast<uint16_t>(scale_bits[r]);
        zero_table[i] = static_cast<int8_t>(static_cast<uint8_t>(zero_bits[r]));
      }
    }
  }
  __syncthreads();

  // Folding thread f (< 128): C element e = f % 4 of lane f / 4, i.e. row (f / 16) + 8 (e / 2)
  // and column 2 ((f / 4) % 4) + e % 2 of the tile. Consecutive threads read consecutive words.
  const int fold_lane = threadIdx.x / 4, fold_e = threadIdx.x % 4;
  const int fold_row = fold_lane / 4 + 8 * (fold_e / 2);
  const int fold_col = 2 * (fold_lane % 4) + fold_e % 2;
  const bool folder = threadIdx.x < kFolders;
  int32_t group_sum = 0;
  float partial = 0.0f;
  int fold_window_in_group = 0, fold_group = 0;

  for (int stage = 0; stage < stages; ++stage) {
    uint4 next[kWindowsPerWarp];
    if (stage + 1 < stages) {       // CTA-uniform
      load_stage(stage + 1, next);  // in flight during this stage's MMAs
    } else {
#pragma unroll
      for (int j = 0; j < kWindowsPerWarp; ++j) next[j] = make_uint4(0, 0, 0, 0);
    }
    const int buffer = stage & 1;
    uint32_t lo[8], hi[8], next_lo[8], next_hi[8];
    load_activations(window_of(stage, 0), lo, hi);
#pragma unroll
    for (int j = 0; j < kWindowsPerWarp; ++j) {
      const int window = window_of(stage, j);
      if (j + 1 < kWindowsPerWarp) load_activations(window + 1, next_lo, next_hi);
      if (window < windows) {  // warp-uniform
        const uint32_t zero_plus_8 =
            ZeroPlus8x4(zero_table[g * groups + window / windows_per_group]);
        const uint32_t words[4] = {current[j].x, current[j].y, current[j].z, current[j].w};
        int32_t acc[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          // a0, a1: bytes 8s + 0..3 of rows g, g + 8; a2, a3: bytes 8s + 4..7.
          const uint32_t a[4] = {lo[2 * s], hi[2 * s], lo[2 * s + 1], hi[2 * s + 1]};
          const uint32_t b0 = CenteredInt8x4(words[s] & 0x0f0f0f0fu, flip, zero_plus_8);
          const uint32_t b1 = CenteredInt8x4((words[s] >> 4) & 0x0f0f0f0fu, flip, zero_plus_8);
          MmaInt8(acc[s % 2], a, b0, b1);
        }
        exchange[buffer][warp * kWindowsPerWarp + j][lane] =
            make_int4(acc[0][0] + acc[1][0], acc[0][1] + acc[1][1], acc[0][2] + acc[1][2],
                      acc[0][3] + acc[1][3]);
      }
      if (j + 1 < kWindowsPerWarp) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          lo[i] = next_lo[i];
          hi[i] = next_hi[i];
        }
      }
    }
    __syncthreads();
    if (folder) {
      const int32_t* sums = reinterpret_cast<const int32_t*>(&exchange[buffer][0][0]);
      // The stage's windows in ascending K order (the last stage may be short). Unrolled so
      // that the shared-memory reads are issued ahead of the dependent adds.
      const int count = min(kStageWindows, windows - stage * kStageWindows);
#pragma unroll 8
      for (int slot = 0; slot < count; ++slot) {
        group_sum += sums[slot * 32 * 4 + threadIdx.x];  // window slot, lane f / 4, element f % 4
        if (++fold_window_in_group == windows_per_group) {  // the window ends its group
          fold_window_in_group = 0;
          const float scale = HalfBitsToFloat(scale_table[fold_col * groups + fold_group]);
          partial = fmaf(__int2float_rn(group_sum), scale, partial);
          group_sum = 0;
          ++fold_group;
        }
      }
    }
#pragma unroll
    for (int j = 0; j < kWindowsPerWarp; ++j) current[j] = next[j];
  }

  const int64_t col = n_base + fold_col;
  if (folder && fold_row < p.m && col < p.n) {
    Finish<Out>(p, partial, HalfBitsToFloat(p.x_scales[fold_row]), fold_row, static_cast<int>(col));
  }
}

}  // namespace

cudaError_t LaunchW4A8DecodeStreaming(const W4A8DecodeParams& p, cudaStream_t stream) {
  if (p.group_size % kWindow != 0 || p.k / p.group_size > kMaxGroups) return cudaErrorInvalidValue;
  const unsigned grid = static_cast<unsigned>((static_cast<int64_t>(p.n) + 7) / 8);
  const bool high_rows = p.m > 8;
  if (p.y_is_bf16) {
    if (high_rows) {
      W4A8DecodeStreamingKernel<true, __nv_bfloat16><<<grid, kThreads, 0, stream>>>(p);
    } else {
      W4A8DecodeStreamingKernel<false, __nv_bfloat16><<<grid, kThreads, 0, stream>>>(p);
    }
  } else {
    if (high_rows) {
      W4A8DecodeStreamingKernel<true, float><<<grid, kThreads, 0, stream>>>(p);
    } else {
      W4A8DecodeStreamingKernel<false, float><<<grid, kThreads, 0, stream>>>(p);
    }
  }
  return cudaGetLastError();
}

int W4A8StreamingKernelResidentCtas(bool high_rows) {
  int blocks = 0;
  const cudaError_t error =
      high_rows ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                      &blocks, W4A8DecodeStreamingKernel<true, __nv_bfloat16>, kThreads, 0)
                : cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                      &blocks, W4A8DecodeStreamingKernel<false, __nv_bfloat16>, kThreads, 0);
  return error == cudaSuccess ? blocks : 0;
}

int W4A8StreamingExpectedResidentCtas(bool high_rows) { return ResidentCtas(high_rows); }

}  // namespace flatfleet::cuda::internal
