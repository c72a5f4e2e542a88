// Decode W8A8 GEMM (m <= 16): the INT8 sibling of w4a8_decode_gemm.cu, memory-bound.
//
// Each warp owns 8 output channels and walks all of K (one scale group: per channel), so it holds
// whole outputs: the int32 sums come from mma.sync m16n8k32 s8 (activations as A, rows >= m
// zero; weights as B), then y = fmaf(float(acc), s_w, 0) * s_x [+ add], one rounding each, as
// the reference. Weights stream in windows of 64 K elements: lane (g, t) (g = lane / 4,
// t = lane % 4) copies bytes 16t .. 16t + 15 of the window of channel g, through a per-warp ring
// of kRing windows in shared memory (cp.async, kRing - 1 windows in flight per lane). MMA s
// (s = 0, 1) of a window takes words 2s, 2s + 1 of those bytes as b0, b1 and the same K elements
// of rows g and g + 8 (bytes 16t + 8s + 0..3 and + 4..7) as A: a permutation of K, which integer
// sums do not mind. Each lane reads back only what it copied, so cp.async.wait_group suffices (no
// barrier); warps are independent.
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/decode_gemm_device.cuh"
#include "kernels/cuda/w8a8_decode_gemm_launch.h"

namespace flatfleet::cuda::internal {
namespace {

using namespace decode_gemm;  // NOLINT: the shared device helpers

constexpr int kWarpsPerBlock = 4;
constexpr int kThreads = kWarpsPerBlock * 32;
constexpr int kWindow = 64;  // K elements (bytes) per lane-quad copy: 4 x 16
constexpr int kRing = 16;    // windows per warp ring: 16 x 512 bytes, 32 KB per block

__device__ __forceinline__ uint4 LoadActivation16(bool valid, const int8_t* pointer) {
  uint4 v = make_uint4(0, 0, 0, 0);
  if (valid) {
    asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(pointer));
  }
  return v;
}

template <typename Out>
__global__ void __launch_bounds__(kThreads) W8A8DecodeRingKernel(const W8A8DecodeParams p) {
  // [warp][slot][lane]: consecutive lanes, consecutive 16 bytes (no bank conflicts).
  __shared__ __align__(16) uint4 stage[kWarpsPerBlock][kRing][32];
  const int lane = threadIdx.x % 32, warp_in_block = threadIdx.x / 32;
  const int64_t n_base = (static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp_in_block) * 8;
  if (n_base >= p.n) return;  // whole warps only; the kernel has no block barrier
  const int g = lane / 4, t = lane % 4;
  const int k = p.k;
  const int windows = (k + kWindow - 1) / kWindow;
  const int64_t row = n_base + g;  // this lane's B column
  const bool row_valid = row < p.n;
  const int8_t* w_row = p.w_codes + (row_valid ? row : 0) * k + 16 * t;
  const bool x_valid_lo = g < p.m, x_valid_hi = g + 8 < p.m;
  const int8_t* x_lo = p.x_codes + static_cast<int64_t>(x_valid_lo ? g : 0) * k + 16 * t;
  const int8_t* x_hi = p.x_codes + static_cast<int64_t>(x_valid_hi ? g + 8 : 0) * k + 16 * t;

  auto stage_address = [&](int slot) { return SharedAddress(&stage[warp_in_block][slot][lane]); };
  // Window `window` into slot `slot`: this lane's 16 bytes, zeros past k or n (k is a multiple
  // of 16, so a lane's bytes are all in or all out). One commit group per call, also when empty,
  // so that commit group i is always window i.
  auto issue_window = [&](int window, int slot) {
    const bool valid = window < windows && window * kWindow + 16 * t < k && row_valid;
    CopyAsync16(stage_address(slot),
                valid ? w_row + static_cast<int64_t>(window) * kWindow : p.w_codes, valid);
    CopyAsyncCommit();
  };

  int32_t acc[2][4] = {};  // MMA 0 and MMA 1 of each window: two independent chains
#pragma unroll
  for (int s = 0; s < kRing - 1; ++s) issue_window(s, s);
  for (int base = 0; base < windows; base += kRing) {
#pragma unroll
    for (int u = 0; u < kRing; ++u) {
      const int window = base + u;   // in slot u (base is a multiple of kRing)
      if (window >= windows) break;  // warp-uniform
      CopyAsyncWait<kRing - 2>();    // groups 0 .. window have landed
      const uint4 w = LoadShared16(stage_address(u));
      issue_window(window + kRing - 1, (u + kRing - 1) % kRing);  // the previous window's slot
      const int kw = window * kWindow;
      const bool in_k = kw + 16 * t < k;  // zeros past k (the weights there are zeros too)
      const uint4 lo = LoadActivation16(x_valid_lo && in_k, x_lo + kw);
      const uint4 hi = LoadActivation16(x_valid_hi && in_k, x_hi + kw);
      const uint32_t a0[4] = {lo.x, hi.x, lo.y, hi.y};
      const uint32_t a1[4] = {lo.z, hi.z, lo.w, hi.w};
      MmaInt8(acc[0], a0, w.x, w.y);
      MmaInt8(acc[1], a1, w.z, w.w);
    }
  }
  CopyAsyncWait<0>();  // nothing left in flight at exit

  // C fragment: element e is row g + 8 (e / 2), column n_base + 2t + e % 2.
  const float x_scale_lo = x_valid_lo ? HalfBitsToFloat(p.x_scales[g]) : 0.0f;
  const float x_scale_hi = x_valid_hi ? HalfBitsToFloat(p.x_scales[g + 8]) : 0.0f;
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int out_row = g + 8 * (e / 2);
    const int64_t col = n_base + 2 * t + e % 2;
    if (out_row < p.m && col < p.n) {
      const int32_t sum = acc[0][e] + acc[1][e];  // exact: |sum| within the k bound
      const float partial = fmaf(__int2float_rn(sum), HalfBitsToFloat(p.w_scales[col]), 0.0f);
      Finish<Out>(p, partial, e / 2 == 0 ? x_scale_lo : x_scale_hi, out_row, static_cast<int>(col));
    }
  }
}

// The reference kernel: one thread per output (row blockIdx.y, column).
template <typename Out>
__global__ void __launch_bounds__(kThreads) W8A8DecodeSimpleKernel(const W8A8DecodeParams p) {
  const int row = blockIdx.y;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (col >= p.n) return;
  const int8_t* w = p.w_codes + col * p.k;
  const int8_t* x = p.x_codes + static_cast<int64_t>(row) * p.k;
  int32_t acc = 0;
  for (int kk = 0; kk < p.k; ++kk) acc += static_cast<int32_t>(x[kk]) * w[kk];
  const float partial = fmaf(__int2float_rn(acc), HalfBitsToFloat(p.w_scales[col]), 0.0f);
  Finish<Out>(p, partial, HalfBitsToFloat(p.x_scales[row]), row, static_cast<int>(col));
}

template <typename Out>
cudaError_t LaunchForOutput(const W8A8DecodeParams& p, cudaStream_t stream) {
  if (p.simple) {
    const dim3 grid(static_cast<unsigned>((p.n + kThreads - 1) / kThreads),
                    static_cast<unsigned>(p.m));
    W8A8DecodeSimpleKernel<Out><<<grid, kThreads, 0, stream>>>(p);
  } else {
    const int64_t warps = (static_cast<int64_t>(p.n) + 7) / 8;
    const auto grid = static_cast<unsigned>((warps + kWarpsPerBlock - 1) / kWarpsPerBlock);
    W8A8DecodeRingKernel<Out><<<grid, kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchW8A8Decode(const W8A8DecodeParams& p, cudaStream_t stream) {
  if (p.m <= 0 || p.n <= 0) return cudaSuccess;
  return p.y_is_bf16 ? LaunchForOutput<__nv_bfloat16>(p, stream)
                     : LaunchForOutput<float>(p, stream);
}

}  // namespace flatfleet::cuda::internal
