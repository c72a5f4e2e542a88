// Stable counting sort of the (row, slot) routing entries by expert, in one block:
//   pass 1: per-expert counts (shared-memory atomics: the count is order-free, so deterministic),
//           then an exclusive scan into expert_offsets;
//   pass 2: entries in tiles of one per thread, in flat order i = row * top_k + slot. An entry's
//           position is offsets[e] + (entries of e in earlier tiles) + (entries of e in earlier
//           warps of this tile) + (its rank among the lanes of its warp holding e, from
//           __match_any_sync). Flat order within an expert is ascending row (a row names an
//           expert at most once), which is the required stability.
// Then the gather copies each permuted row from its source row.
#include <cuda_runtime.h>

#include "kernels/cuda/moe_permute_launch.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kPermuteThreads = 1024;
constexpr int kPermuteWarps = kPermuteThreads / 32;

__global__ void __launch_bounds__(kPermuteThreads) MoePermuteKernel(PermuteParams p) {
  __shared__ int counts[kPermuteMaxExperts];
  // Position of the next entry of each expert (after the tiles processed so far).
  __shared__ int next_position[kPermuteMaxExperts];
  // Per tile: entries of each expert in each warp, then turned into each warp's first position.
  __shared__ int warp_slots[kPermuteWarps][kPermuteMaxExperts];
  __shared__ int valid_total;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int num_experts = p.num_experts;

  for (int e = tid; e < num_experts; e += kPermuteThreads) counts[e] = 0;
  __syncthreads();
  for (int i = tid; i < p.total; i += kPermuteThreads) {
    const int e = p.expert_ids[i];
    if (e >= 0 && e < num_experts) atomicAdd(&counts[e], 1);
  }
  __syncthreads();
  if (tid == 0) {
    int running = 0;
    for (int e = 0; e < num_experts; ++e) {
      p.expert_offsets[e] = running;
      next_position[e] = running;
      running += counts[e];
    }
    p.expert_offsets[num_experts] = running;
    valid_total = running;
  }
  __syncthreads();

  const unsigned lanes_below = (1u << lane) - 1u;
  for (int tile = 0; tile < p.total; tile += kPermuteThreads) {
    for (int j = tid; j < kPermuteWarps * num_experts; j += kPermuteThreads)
      warp_slots[j / num_experts][j % num_experts] = 0;
    __syncthreads();
    const int i = tile + tid;
    const int e = i < p.total ? p.expert_ids[i] : -1;
    const bool valid = e >= 0 && e < num_experts;
    // Lanes of this warp holding the same expert (invalid lanes group under -1 and are ignored).
    const unsigned same = __match_any_sync(0xffffffffu, valid ? e : -1);
    const int rank = __popc(same & lanes_below);
    if (valid && rank == 0) warp_slots[warp][e] = __popc(same);
    __syncthreads();
    // Per expert, an exclusive scan over the warps, starting where the previous tile stopped.
    for (int x = tid; x < num_experts; x += kPermuteThreads) {
      int running = next_position[x];
      for (int w = 0; w < kPermuteWarps; ++w) {
        const int c = warp_slots[w][x];
        warp_slots[w][x] = running;
        running += c;
      }
      next_position[x] = running;
    }
    __syncthreads();
    if (valid) {
      const int position = warp_slots[warp][e] + rank;
      p.permuted_source_row[position] = i / p.top_k;
      p.inverse_permutation[i] = position;
    } else if (i < p.total) {
      p.inverse_permutation[i] = -1;
    }
    __syncthreads();  // warp_slots is cleared for the next tile
  }
  // Positions no valid entry reached (only with out-of-range ids).
  for (int position = valid_total + tid; position < p.total; position += kPermuteThreads)
    p.permuted_source_row[position] = -1;
}

// One block per permuted row: 16-byte chunks.
__global__ void GatherRowsVectorKernel(const uint4* __restrict__ x, int64_t chunks,
                                       const int32_t* __restrict__ source_row,
                                       uint4* __restrict__ xp) {
  const int64_t row = blockIdx.x;
  const int source = source_row[row];
  uint4* dst = xp + row * chunks;
  if (source < 0) {
    for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) dst[c] = make_uint4(0, 0, 0, 0);
    return;
  }
  const uint4* src = x + static_cast<int64_t>(source) * chunks;
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) dst[c] = src[c];
}

// The same, element by element (any hidden size or alignment).
__global__ void GatherRowsScalarKernel(const unsigned short* __restrict__ x, int64_t hidden,
                                       const int32_t* __restrict__ source_row,
                                       unsigned short* __restrict__ xp) {
  const int64_t row = blockIdx.x;
  const int source = source_row[row];
  unsigned short* dst = xp + row * hidden;
  if (source < 0) {
    for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) dst[c] = 0;
    return;
  }
  const unsigned short* src = x + static_cast<int64_t>(source) * hidden;
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) dst[c] = src[c];
}

}  // namespace

cudaError_t LaunchMoePermute(const PermuteParams& params, cudaStream_t stream) {
  MoePermuteKernel<<<1, kPermuteThreads, 0, stream>>>(params);
  return cudaGetLastError();
}

cudaError_t LaunchGatherRows(const GatherParams& params, cudaStream_t stream) {
  if (params.permuted_rows <= 0 || params.hidden <= 0) return cudaSuccess;
  constexpr int kThreads = 128;
  const unsigned blocks = static_cast<unsigned>(params.permuted_rows);
  if (params.vectorized) {
    GatherRowsVectorKernel<<<blocks, kThreads, 0, stream>>>(
        reinterpret_cast<const uint4*>(params.x), params.hidden / 8, params.permuted_source_row,
        reinterpret_cast<uint4*>(params.xp));
  } else {
    GatherRowsScalarKernel<<<blocks, kThreads, 0, stream>>>(
        reinterpret_cast<const unsigned short*>(params.x), params.hidden,
        params.permuted_source_row, reinterpret_cast<unsigned short*>(params.xp));
  }
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
