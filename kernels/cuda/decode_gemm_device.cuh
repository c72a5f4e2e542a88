// Device helpers shared by the decode-sized integer GEMMs (w4a8_decode_gemm.cu,
// w8a8_decode_gemm.cu): the INT8 MMA, loads issued in program order, cp.async, and the fused
// epilogue. All asm is volatile so that loads meant to be in flight during a computation are
// issued before it (the MMAs are volatile too, and volatile asm keeps its order).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace flatfleet::cuda::internal::decode_gemm {

__device__ __forceinline__ void MmaInt8(int32_t (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 16 bytes read once: not kept in L1 (which holds the activations).
__device__ __forceinline__ uint4 LoadStreaming16(const uint32_t* pointer) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(pointer));
  return v;
}
// One FP16 scale (zero-extended) and one zero-point byte (zero-extended; the caller casts).
__device__ __forceinline__ uint32_t LoadU16(const uint16_t* pointer) {
  uint32_t v;
  asm volatile("ld.global.nc.u16 %0, [%1];\n" : "=r"(v) : "l"(pointer));
  return v;
}
__device__ __forceinline__ uint32_t LoadU8(const int8_t* pointer) {
  uint32_t v;
  asm volatile("ld.global.nc.u8 %0, [%1];\n" : "=r"(v) : "l"(pointer));
  return v;
}

// 8 activation bytes, cached in L1 (all warps of the SM read the same few KB).
__device__ __forceinline__ uint2 LoadActivation8(const int8_t* pointer) {
  uint2 v;
  asm volatile("ld.global.nc.v2.u32 {%0, %1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "l"(pointer));
  return v;
}

// cp.async of 16 bytes global -> shared, zero-filled (nothing read) when !valid; commit; wait.
// "memory" clobbers: the compiler must not move shared-memory accesses across them.
__device__ __forceinline__ uint32_t SharedAddress(const void* pointer) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}
__device__ __forceinline__ void CopyAsync16(uint32_t shared, const void* global, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared), "l"(global),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void CopyAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void CopyAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}
__device__ __forceinline__ uint4 LoadShared16(uint32_t shared) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(shared)
               : "memory");
  return v;
}

// 32 activation bytes as eight words (zeros when !valid).
__device__ __forceinline__ void LoadActivation32(bool valid, const int8_t* pointer,
                                                 uint32_t (&v)[8]) {
  if (valid) {
    asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(v[0]), "=r"(v[1]), "=r"(v[2]), "=r"(v[3])
                 : "l"(pointer));
    asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(v[4]), "=r"(v[5]), "=r"(v[6]), "=r"(v[7])
                 : "l"(pointer + 16));
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = 0;
  }
}

__device__ __forceinline__ float HalfBitsToFloat(uint32_t bits) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
}

__device__ __forceinline__ void PrefetchL2(const void* pointer) {
  asm volatile("prefetch.global.L2 [%0];\n" ::"l"(pointer));
}

// Prefetches bytes [begin, end) of global memory into L2, one 32-byte sector per lane step.
__device__ __forceinline__ void PrefetchRangeL2(const void* base, int64_t begin, int64_t end,
                                                int lane) {
  const char* bytes = static_cast<const char*>(base);
  for (int64_t at = (begin & ~int64_t{31}) + 32 * lane; at < end; at += 32 * 32) {
    PrefetchL2(bytes + at);
  }
}

__device__ __forceinline__ void StoreOutput(float* y, float v) { *y = v; }
__device__ __forceinline__ void StoreOutput(__nv_bfloat16* y, float v) {
  *y = __float2bfloat16_rn(v);
}

// y = round(partial * x_scale [+ add]): each operation one float32 rounding (never contracted).
template <typename Out, typename Params>
__device__ __forceinline__ void Finish(const Params& p, float partial, float x_scale, int row,
                                       int col) {
  float v = __fmul_rn(partial, x_scale);
  if (p.epilogue_add != nullptr) v = __fadd_rn(v, p.epilogue_add[col]);
  StoreOutput(static_cast<Out*>(p.y) + static_cast<int64_t>(row) * p.y_stride + col, v);
}

}  // namespace flatfleet::cuda::internal::decode_gemm
