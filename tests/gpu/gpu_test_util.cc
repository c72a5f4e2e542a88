#include "tests/gpu/gpu_test_util.h"

namespace flatfleet::cuda::testing {

bool HasGpu() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

}  // namespace flatfleet::cuda::testing
