// Raw launcher of the mid-M W4A8 GEMM (w4a8_midm_gemm.cu). It checks nothing: callers go through
// GemmW4A8Midm (w4a8_midm_gemm.h), which rejects bad arguments before any launch.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/w4a8_prefill_gemm_launch.h"

namespace flatfleet::cuda::internal {

enum class W4A8MidmTileVariant { k64x32, k64x64, k64x128, k128x128 };

// The mma.sync kernel with the given tile. The operands are the prefill GEMM's (variant and
// group_accumulators unused); needs params.group_sums_below_2_22.
cudaError_t LaunchW4A8Midm(const W4A8PrefillParams& params, W4A8MidmTileVariant tile,
                           cudaStream_t stream);

// Blocks of the kernel (bf16 output) resident per SM of the current device, from
// cudaOccupancyMaxActiveBlocksPerMultiprocessor with its dynamic shared memory (0 on error), and
// what its __launch_bounds__ ask for: a GPU test checks that the registers and shared memory
// allow them.
int W4A8MidmResidentBlocks(W4A8MidmTileVariant tile);
int W4A8MidmExpectedResidentBlocks(W4A8MidmTileVariant tile);

}  // namespace flatfleet::cuda::internal
