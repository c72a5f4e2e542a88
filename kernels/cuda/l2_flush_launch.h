// Raw launcher of the L2 flush (l2_flush.cu): reads a device buffer so that whatever the L2 held
// before is evicted by clean lines. Used by CublasLtGemm's autotuner (bf16_gemm.cc) so that each
// timed candidate streams its weights from HBM, as in the engine, where every layer's weights
// differ. Reading (not writing, as cudaMemset would) leaves no dirty lines whose write-back would
// then be charged to the timed GEMM. It checks nothing; the caller sizes the buffer (about twice
// the L2).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace flatfleet::cuda::internal {

// `buffer`: 16-byte aligned, `bytes` a multiple of 16, initialized (any values). `sink`: 4 bytes
// of device memory the kernel may write (it practically never does; the write only keeps the
// loads alive).
cudaError_t LaunchL2FlushRead(const void* buffer, size_t bytes, uint32_t* sink,
                              cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
