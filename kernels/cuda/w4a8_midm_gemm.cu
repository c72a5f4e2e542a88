// Mid-M W4A8 GEMM (17..256 rows): the shared mma.sync kernel (w4a8_mma_sync_tile.cuh, where its
// numerics are spelled out) with 64-row tiles for weight bandwidth. Each SM should keep 32 KiB
// or so of weights in flight: blocks per SM x (stages - 1) x the weight bytes of one 128-wide
// K tile (64 bytes per column) = 2 x 7 x 2, 2 x 6 x 4, 2 x 4 x 8 and 1 x 5 x 8 KiB for the four
// tiles (half that where the grid gives an SM one block). Two blocks per SM fit in the 228 KiB of
// an H100/H200 SM (each block also reserves 1 KiB) and in its registers (at most 255 per thread for
// 256 threads per SM). Only the exact magic-number conversion is instantiated (group sums below
// 2^22: every real model's groups); other groups run the prefill kernel.
#include <cuda_bf16.h>

#include "kernels/cuda/w4a8_midm_gemm_launch.h"
#include "kernels/cuda/w4a8_mma_sync_tile.cuh"

namespace flatfleet::cuda::internal {
namespace {

// Four warps a block at least, so that one block per SM (the narrow layers' grids) still issues
// from all four SM sub-partitions: 64 x 32 as four warps of 16 x 32, 64 x 64 as four of 32 x 32.
using Tile64x32 = w4a8_mma::Tile<4, 1, 8, 2, 16>;  // 8 x 11.5 KiB = 92 KiB
using Tile64x64 = w4a8_mma::Tile<2, 2, 7, 2, 32>;  // 7 x 14 KiB = 98 KiB
using Tile64x128 = w4a8_mma::Tile<1, 4, 5, 2>;     // 5 x 19 KiB = 95 KiB
using Tile128x128 = w4a8_mma::Tile<2, 4, 6, 1>;    // 6 x 28 KiB = 168 KiB
constexpr int kSmemPerSm = 228 * 1024, kReservedPerBlock = 1024;
template <class T>
constexpr bool FitsPerSm() {
  return T::kMinBlocks * (T::kSmemBytes + kReservedPerBlock) <= kSmemPerSm;
}
static_assert(FitsPerSm<Tile64x32>() && FitsPerSm<Tile64x64>() && FitsPerSm<Tile64x128>() &&
                  FitsPerSm<Tile128x128>(),
              "blocks per SM in shared memory");

template <class T>
cudaError_t LaunchTile(const W4A8PrefillParams& p, cudaStream_t stream) {
  return p.y_is_bf16 ? w4a8_mma::LaunchMmaSync<T, __nv_bfloat16, true>(p, stream)
                     : w4a8_mma::LaunchMmaSync<T, float, true>(p, stream);
}

template <class T>
int ResidentBlocks() {
  const auto kernel = w4a8_mma::W4A8MmaSyncKernel<T, __nv_bfloat16, true>;
  int blocks = 0;
  if (w4a8_mma::OptInDynamicSharedMemory(reinterpret_cast<const void*>(kernel), T::kSmemBytes) !=
          cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, T::kThreads, T::kSmemBytes) !=
          cudaSuccess) {
    return 0;
  }
  return blocks;
}

}  // namespace

cudaError_t LaunchW4A8Midm(const W4A8PrefillParams& p, W4A8MidmTileVariant tile,
                           cudaStream_t stream) {
  if (p.m == 0 || p.n == 0) return cudaSuccess;
  if (!p.group_sums_below_2_22) return cudaErrorInvalidValue;
  switch (tile) {
    case W4A8MidmTileVariant::k64x32:
      return LaunchTile<Tile64x32>(p, stream);
    case W4A8MidmTileVariant::k64x64:
      return LaunchTile<Tile64x64>(p, stream);
    case W4A8MidmTileVariant::k64x128:
      return LaunchTile<Tile64x128>(p, stream);
    case W4A8MidmTileVariant::k128x128:
      return LaunchTile<Tile128x128>(p, stream);
  }
  return cudaErrorInvalidValue;
}

int W4A8MidmResidentBlocks(W4A8MidmTileVariant tile) {
  switch (tile) {
    case W4A8MidmTileVariant::k64x32:
      return ResidentBlocks<Tile64x32>();
    case W4A8MidmTileVariant::k64x64:
      return ResidentBlocks<Tile64x64>();
    case W4A8MidmTileVariant::k64x128:
      return ResidentBlocks<Tile64x128>();
    case W4A8MidmTileVariant::k128x128:
      return ResidentBlocks<Tile128x128>();
  }
  return 0;
}

int W4A8MidmExpectedResidentBlocks(W4A8MidmTileVariant tile) {
  switch (tile) {
    case W4A8MidmTileVariant::k64x32:
      return Tile64x32::kMinBlocks;
    case W4A8MidmTileVariant::k64x64:
      return Tile64x64::kMinBlocks;
    case W4A8MidmTileVariant::k64x128:
      return Tile64x128::kMinBlocks;
    case W4A8MidmTileVariant::k128x128:
      return Tile128x128::kMinBlocks;
  }
  return 0;
}

}  // namespace flatfleet::cuda::internal
