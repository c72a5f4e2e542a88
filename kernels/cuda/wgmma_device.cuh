// Hopper (sm_90a) device helpers shared by the wgmma kernels (w4a8_prefill_gemm_wgmma.cu,
// w4a8_fragment_wgmma_gemm.cu): the 128-byte swizzle of K-major operand tiles and their shared-
// memory matrix descriptors, the wgmma fences, commit and waits, mbarriers, the generic-to-async
// proxy fence, cp.async completion on an mbarrier and named barriers. All asm is volatile with
// "memory" clobbers where ordering against shared-memory accesses matters.
#pragma once

#include <cstdint>

namespace flatfleet::cuda::internal::wgmma {

// Byte offset of 16-byte chunk `chunk` (0..7) of row `row` in a 128-byte-swizzled tile (rows of
// 128 bytes, chunk c of row r at chunk c ^ (r % 8), 8-row atoms of 1024 bytes).
__device__ __forceinline__ int Swizzle128(int row, int chunk) {
  return row * 128 + ((chunk ^ (row & 7)) << 4);
}

// Shared-memory matrix descriptor of a K-major operand in the 128-byte swizzle: start address,
// leading byte offset (unused by this layout; 16 bytes), stride byte offset 1024 (from one 8-row
// atom to the next), layout type 1 (128B swizzle) in bits 62-63.
__device__ __forceinline__ uint64_t Descriptor(uint32_t shared_address) {
  return static_cast<uint64_t>((shared_address & 0x3ffffu) >> 4) | (uint64_t{16 >> 4} << 16) |
         (uint64_t{1024 >> 4} << 32) | (uint64_t{1} << 62);
}

__device__ __forceinline__ void WgmmaFence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void WgmmaCommit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void WgmmaWaitAll() {
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
// Waits until at most one committed wgmma group of this warpgroup is still in flight.
__device__ __forceinline__ void WgmmaWaitAllButOne() {
  asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
}

// Waits until at most `pending` (0..3) committed wgmma groups are in flight; the instruction takes
// an immediate, so call it with a count known once loops are unrolled.
__device__ __forceinline__ void WgmmaWaitPending(int pending) {
  switch (pending) {
    case 0:
      asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
      break;
    case 1:
      asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
      break;
    case 2:
      asm volatile("wgmma.wait_group.sync.aligned 2;\n" ::: "memory");
      break;
    default:
      asm volatile("wgmma.wait_group.sync.aligned 3;\n" ::: "memory");
      break;
  }
}

// mbarriers in shared memory (CTA scope): init with an arrival count, arrive (release), wait for
// the phase of the given parity to complete (acquire).
__device__ __forceinline__ void MbarrierInit(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
// Makes the initialised mbarriers visible to the other threads (and the async proxy).
__device__ __forceinline__ void FenceMbarrierInit() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void MbarrierArrive(uint32_t bar) {
  asm volatile(
      "{\n"
      ".reg .b64 state;\n"
      "mbarrier.arrive.shared::cta.b64 state, [%0];\n"
      "}\n" ::"r"(bar)
      : "memory");
}
__device__ __forceinline__ void MbarrierWait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n"
        "}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (done == 0);
}

// One arrival on `bar` once every cp.async this thread issued before it has landed (counted in
// the barrier's initial arrival count: .noinc).
__device__ __forceinline__ void CopyAsyncArriveOn(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
// Waits for every cp.async this thread issued.
__device__ __forceinline__ void CopyAsyncWaitAll() {
  asm volatile("cp.async.wait_all;\n" ::: "memory");
}
// Makes this thread's generic-proxy shared-memory writes (stores, completed cp.async) visible to
// the async proxy that wgmma reads through.
__device__ __forceinline__ void FenceProxyAsync() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// Pins a register's value at this point of the instruction stream: no read of an accumulator may
// move above the wgmma wait, and no write below the wgmma fence.
__device__ __forceinline__ void FenceRegister(int32_t& r) { asm volatile("" : "+r"(r)::"memory"); }
__device__ __forceinline__ void FenceRegister(uint32_t& r) { asm volatile("" : "+r"(r)::"memory"); }

// Named barrier `id` (1..15; 0 is __syncthreads) over `threads` threads (a multiple of 32).
__device__ __forceinline__ void NamedBarrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

}  // namespace flatfleet::cuda::internal::wgmma
