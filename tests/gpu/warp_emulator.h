// Host emulation of just enough of the CUDA execution model to run the tensor-core attention
// kernel (kernels/cuda/paged_attention_flash.cuh) on the CPU, so that its index arithmetic,
// fragment layouts, pipelines and merges are checked where no GPU is (CI, development machines).
//
// One block at a time; every CUDA thread is a host thread. __syncthreads is a barrier over the
// block; warp shuffles, ldmatrix and mma.sync exchange operands through per-warp slots and a warp
// barrier, and compute their results with the PTX ISA's fragment layouts (m8n8 ldmatrix, with and
// without .trans; mma.m16n8k16 row.col bf16 -> f32). cp.async copies at once (so a missing wait
// is not detected here). Only `extern __shared__` dynamic shared memory is supported, in
// EmulatedSharedMemory(). Include this before any kernel header.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define FLATFLEET_HOST_WARP_EMULATION 1

#undef __global__
#undef __device__
#undef __forceinline__
#undef __shared__
#undef __align__
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

namespace flatfleet::cuda::emulation {

struct Index3 {
  unsigned x = 0, y = 0, z = 0;
};

inline thread_local Index3 thread_index, block_index;
inline Index3 grid_dim, block_dim;

inline constexpr size_t kSharedBytes = 232448;  // 227 KB, the sm_90 per-block maximum

}  // namespace flatfleet::cuda::emulation

// The kernels' `extern __shared__ unsigned char smem[]` (namespace
// flatfleet::cuda::internal::flash) is defined by the test that includes this file, once:
// `alignas(16) unsigned char smem[...]`.
namespace flatfleet::cuda::internal::flash {
extern unsigned char smem[];
}  // namespace flatfleet::cuda::internal::flash

namespace flatfleet::cuda::emulation {

inline unsigned char* EmulatedSharedMemory() { return internal::flash::smem; }

// The running block: barriers and the per-warp exchange slots (two sets, used alternately, so
// one barrier per collective suffices: a lane can only reuse a set after every lane of its warp
// has passed the next collective's barrier, i.e. finished reading).
struct Block {
  struct Warp {
    explicit Warp(int lanes) : barrier(lanes) {}
    std::barrier<> barrier;
    uint32_t slots[2][32][12] = {};
    int phase[32] = {};
  };
  explicit Block(int threads) : barrier(threads) {
    for (int w = 0; w < (threads + 31) / 32; ++w) {
      warps.push_back(std::make_unique<Warp>(std::min(32, threads - 32 * w)));
    }
  }
  std::barrier<> barrier;
  std::vector<std::unique_ptr<Warp>> warps;
};
inline Block* running_block = nullptr;

inline int Lane() { return static_cast<int>(thread_index.x % 32); }
inline Block::Warp& MyWarp() { return *running_block->warps[thread_index.x / 32]; }

// Publishes `count` words of this lane, waits for the warp, and returns the slot set to read.
inline const uint32_t (*Exchange(const uint32_t* words, int count))[12] {
  Block::Warp& warp = MyWarp();
  const int lane = Lane();
  const int set = warp.phase[lane];
  warp.phase[lane] ^= 1;
  std::memcpy(warp.slots[set][lane], words, count * sizeof(uint32_t));
  warp.barrier.arrive_and_wait();
  return warp.slots[set];
}

// Runs kernel(args) for every block of `grid` with `threads` threads per block, in order.
template <typename Kernel, typename Args>
void RunGrid(Kernel kernel, const Args& args, Index3 grid, int threads) {
  grid_dim = grid;
  block_dim = {static_cast<unsigned>(threads), 1, 1};
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        Block block(threads);
        running_block = &block;
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t) {
          pool.emplace_back([&, t] {
            thread_index = {static_cast<unsigned>(t), 0, 0};
            block_index = {x, y, z};
            kernel(args);
            // A finished thread no longer holds up the others' barriers.
            block.warps[t / 32]->barrier.arrive_and_drop();
            block.barrier.arrive_and_drop();
          });
        }
        for (auto& thread : pool) thread.join();
        running_block = nullptr;
      }
    }
  }
}

inline float Bf16BitsToFloat(uint32_t bits16) {
  const uint32_t wide = bits16 << 16;
  float value;
  std::memcpy(&value, &wide, sizeof(value));
  return value;
}

}  // namespace flatfleet::cuda::emulation

#define threadIdx ::flatfleet::cuda::emulation::thread_index
#define blockIdx ::flatfleet::cuda::emulation::block_index
#define gridDim ::flatfleet::cuda::emulation::grid_dim
#define blockDim ::flatfleet::cuda::emulation::block_dim

// ---- Intrinsics the kernels use.

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

template <typename T>
inline T __ldg(const T* pointer) {
  return *pointer;
}

inline float __uint_as_float(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// PTX prmt in its default mode: byte i of the result is byte (s >> 4 i) & 7 of {y, x}.
inline uint32_t __byte_perm(uint32_t x, uint32_t y, uint32_t s) {
  const uint64_t bytes = (static_cast<uint64_t>(y) << 32) | x;
  uint32_t result = 0;
  for (int i = 0; i < 4; ++i) {
    const uint32_t selector = (s >> (4 * i)) & 7u;
    result |= static_cast<uint32_t>((bytes >> (8 * selector)) & 0xffu) << (8 * i);
  }
  return result;
}

inline void __syncthreads() {
  ::flatfleet::cuda::emulation::running_block->barrier.arrive_and_wait();
}

inline float __shfl_xor_sync(unsigned /*mask*/, float value, int lane_mask) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  const auto slots = ::flatfleet::cuda::emulation::Exchange(&bits, 1);
  const uint32_t other = slots[::flatfleet::cuda::emulation::Lane() ^ lane_mask][0];
  float result;
  std::memcpy(&result, &other, sizeof(result));
  return result;
}

// ---- The warp primitives of kernels/cuda/warp_mma.cuh.

namespace flatfleet::cuda::internal {

// Shared "addresses" are byte offsets into the emulated shared memory.
inline uint32_t SharedAddress(const void* pointer) {
  return static_cast<uint32_t>(static_cast<const unsigned char*>(pointer) -
                               emulation::EmulatedSharedMemory());
}

inline void CopyAsync16(uint32_t shared, const void* global, bool valid) {
  unsigned char* destination = emulation::EmulatedSharedMemory() + shared;
  if (valid) {
    std::memcpy(destination, global, 16);
  } else {
    std::memset(destination, 0, 16);
  }
}
inline void CopyAsyncCommit() {}
template <int kPending>
inline void CopyAsyncWait() {}

namespace emulation_detail {

inline uint32_t SharedHalfword(uint32_t address) {
  uint16_t value;
  std::memcpy(&value, emulation::EmulatedSharedMemory() + address, sizeof(value));
  return value;
}

// ldmatrix.x4: lanes 8 i .. 8 i + 7 give the row addresses of matrix i (8 rows of 8 b16).
// Without .trans lane l receives row l / 4, columns 2 (l % 4) and + 1 of each matrix; with .trans
// rows 2 (l % 4) and + 1 of column l / 4.
inline void LoadMatrix(uint32_t address, uint32_t (&r)[4], bool transposed) {
  const auto slots = emulation::Exchange(&address, 1);
  const int lane = emulation::Lane();
  for (int i = 0; i < 4; ++i) {
    uint32_t lo, hi;
    if (!transposed) {
      const uint32_t row = slots[8 * i + lane / 4][0];
      lo = SharedHalfword(row + 2 * (2 * (lane % 4)));
      hi = SharedHalfword(row + 2 * (2 * (lane % 4) + 1));
    } else {
      lo = SharedHalfword(slots[8 * i + 2 * (lane % 4)][0] + 2 * (lane / 4));
      hi = SharedHalfword(slots[8 * i + 2 * (lane % 4) + 1][0] + 2 * (lane / 4));
    }
    r[i] = lo | (hi << 16);
  }
}

}  // namespace emulation_detail

inline void LoadMatrixX4(uint32_t address, uint32_t (&r)[4]) {
  emulation_detail::LoadMatrix(address, r, false);
}
inline void LoadMatrixX4Transposed(uint32_t address, uint32_t (&r)[4]) {
  emulation_detail::LoadMatrix(address, r, true);
}

// mma.m16n8k16.row.col: with g = lane / 4, t = lane % 4, A registers hold (g, 2t..2t+1),
// (g + 8, 2t..), (g, 2t + 8..), (g + 8, 2t + 8..); B registers (k 2t..2t+1, n g), (k 2t + 8.., n
// g); C/D (g, 2t..2t+1), (g + 8, 2t..2t+1). Low half = lower index.
inline void MmaBf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  const uint32_t words[6] = {a[0], a[1], a[2], a[3], b0, b1};
  const auto slots = emulation::Exchange(words, 6);
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int half = 0; half < 2; ++half) {
      const int shift = 16 * half;
      A[g][2 * t + half] = emulation::Bf16BitsToFloat((slots[l][0] >> shift) & 0xffff);
      A[g + 8][2 * t + half] = emulation::Bf16BitsToFloat((slots[l][1] >> shift) & 0xffff);
      A[g][2 * t + 8 + half] = emulation::Bf16BitsToFloat((slots[l][2] >> shift) & 0xffff);
      A[g + 8][2 * t + 8 + half] = emulation::Bf16BitsToFloat((slots[l][3] >> shift) & 0xffff);
      B[2 * t + half][g] = emulation::Bf16BitsToFloat((slots[l][4] >> shift) & 0xffff);
      B[2 * t + 8 + half][g] = emulation::Bf16BitsToFloat((slots[l][5] >> shift) & 0xffff);
    }
  }
  const int lane = emulation::Lane(), g = lane / 4, t = lane % 4;
  for (int e = 0; e < 4; ++e) {
    const int row = g + 8 * (e / 2), col = 2 * t + e % 2;
    double sum = d[e];
    for (int k = 0; k < 16; ++k) sum += static_cast<double>(A[row][k]) * B[k][col];
    d[e] = static_cast<float>(sum);
  }
}

}  // namespace flatfleet::cuda::internal
