// Mean device time of a launch sequence, timed with CUDA events on the default stream: one warm-up
// call, then `calls` calls between two events. Shared by the row-kernel benchmarks.
#pragma once

#include <cuda_runtime.h>

namespace flatfleet::bench {

template <typename Launch>
double MeanLaunchSeconds(Launch launch, int calls) {
  launch();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start, nullptr);
  for (int i = 0; i < calls; ++i) launch();
  cudaEventRecord(stop, nullptr);
  cudaEventSynchronize(stop);
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / 1e3 / calls;
}

}  // namespace flatfleet::bench
