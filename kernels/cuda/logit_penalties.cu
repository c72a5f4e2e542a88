// Logit penalties: one block per processed row copies the raw row, then applies the row's
// entries (distinct tokens, so no two threads write the same logit).
#include <cstdint>

#include "kernels/cuda/logit_penalties_launch.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kThreads = 512;

// engine::Sampler::Processed for one token, with explicitly rounded operations (no FMA
// contraction), as the CPU computes it.
__device__ __forceinline__ float Penalised(float v, const LogitPenaltyEntry& e, float repetition,
                                           float frequency, float presence) {
  if (repetition != 1.0f &&
      ((e.flags & LogitPenaltyEntry::kInPrompt) != 0u || e.completion_count > 0)) {
    v = v > 0.0f ? __fdiv_rn(v, repetition) : __fmul_rn(v, repetition);
  }
  if ((frequency != 0.0f || presence != 0.0f) && e.completion_count > 0) {
    v = __fsub_rn(
        v, __fadd_rn(__fmul_rn(frequency, static_cast<float>(e.completion_count)), presence));
  }
  if ((e.flags & LogitPenaltyEntry::kMasked) != 0u) v = -INFINITY;
  return v;
}

__global__ void __launch_bounds__(kThreads) LogitPenaltyKernel(LogitPenalties p) {
  const int64_t j = blockIdx.x;
  const float* raw = p.logits + static_cast<int64_t>(p.source_row[j]) * p.logits_row_stride;
  float* out = p.processed + j * p.vocab;
  for (int64_t i = threadIdx.x; i < p.vocab; i += kThreads) out[i] = raw[i];
  __syncthreads();  // the copy is written before the entries overwrite their logits
  const float repetition = p.repetition_penalty != nullptr ? p.repetition_penalty[j] : 1.0f;
  const float frequency = p.frequency_penalty != nullptr ? p.frequency_penalty[j] : 0.0f;
  const float presence = p.presence_penalty != nullptr ? p.presence_penalty[j] : 0.0f;
  const int32_t begin = p.entry_offsets[j];
  const int32_t end = p.entry_offsets[j + 1];
  for (int32_t e = begin + static_cast<int32_t>(threadIdx.x); e < end; e += kThreads) {
    const LogitPenaltyEntry entry = p.entries[e];
    if (entry.token < 0 || entry.token >= p.vocab) continue;
    out[entry.token] = Penalised(raw[entry.token], entry, repetition, frequency, presence);
  }
}

}  // namespace

cudaError_t LaunchLogitPenalties(const LogitPenalties& args, cudaStream_t stream) {
  if (args.rows <= 0) return cudaSuccess;
  LogitPenaltyKernel<<<static_cast<unsigned>(args.rows), kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
