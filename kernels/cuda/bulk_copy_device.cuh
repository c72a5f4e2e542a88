// Device helpers for bulk copies (cp.async.bulk, sm_90): a contiguous run of global memory into
// shared memory in one instruction, its completion counted in bytes on an mbarrier of the CTA
// (wgmma_device.cuh has the init, arrive and wait). One thread issues a stage's copies; the
// consumers wait on the barrier's phase.
#pragma once

#include <cstdint>

namespace flatfleet::cuda::internal::bulk_copy {

// An L2 policy that evicts the lines it loads first: for data read once (streamed weights), so
// that it does not push out what is read again (the activations, the other CTAs' slices).
__device__ __forceinline__ uint64_t EvictFirstPolicy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}

// One arrival on `bar` that also expects `bytes` more of transactions in the current phase.
__device__ __forceinline__ void MbarrierArriveExpectTx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}

// `bytes` (a multiple of 16; both addresses 16-byte aligned) from global `source` to shared
// `destination`, completing `bytes` transactions on `bar`, loaded under `policy`.
__device__ __forceinline__ void BulkCopyToShared(uint32_t destination, const void* source,
                                                 uint32_t bytes, uint32_t bar, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], "
      "[%1], %2, [%3], %4;\n" ::"r"(destination),
      "l"(source), "r"(bytes), "r"(bar), "l"(policy)
      : "memory");
}

}  // namespace flatfleet::cuda::internal::bulk_copy
