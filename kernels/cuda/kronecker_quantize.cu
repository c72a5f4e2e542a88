// FlatQuant's Kronecker transform and the per-token quantizer in one kernel on the TF32 tensor
// cores (see kronecker_quantize.h for the numerics, the layout and the split path).
#include <cooperative_groups.h>

#include <atomic>

#include "kernels/cuda/activation_device.cuh"
#include "kernels/cuda/decode_gemm_device.cuh"
#include "kernels/cuda/kronecker_quantize_launch.h"
#include "kernels/cuda/per_device_attribute.h"

namespace flatfleet::cuda::internal {
namespace {

namespace cg = cooperative_groups;

constexpr int kWarps = kKroneckerQuantizeWarps;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxLeftSteps = 16;  // n1 / 8 k-steps of the first product (n1 <= 128)
constexpr uint16_t kHalfOne = 0x3c00;
constexpr uint16_t kHalfInfinity = 0x7c00;

__device__ __forceinline__ uint32_t ToTf32(float v) {
  uint32_t bits;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(bits) : "f"(v));
  return bits;
}

// c += a b for one m16n8k8 TF32 tile (a: rows g, g + 8 at columns t, t + 4; b: rows t, t + 4 at
// column g; c: rows g, g + 8 at columns 2t, 2t + 1; g = lane / 4, t = lane % 4).
__device__ __forceinline__ void MmaTf32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Starts copying a rows x cols block (cols % 4 == 0) of a row-major float matrix (src_ld floats a
// row) into `staged` (ld floats a row) without waiting: 16 bytes a copy where `aligned` (src and
// src_ld at 16 bytes), else 4. CopyAsyncCommit closes the group, CopyAsyncWait waits for it
// (decode_gemm_device.cuh).
__device__ __forceinline__ void StageAsync(uint32_t* staged, int ld, const float* src, int src_ld,
                                           int rows, int cols, bool aligned) {
  if (aligned) {
    const int quads = cols / 4;
    for (int i = threadIdx.x; i < rows * quads; i += kThreads) {
      const int r = i / quads, q = i - r * quads;
      const auto to = static_cast<uint32_t>(__cvta_generic_to_shared(staged + r * ld + 4 * q));
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(to),
                   "l"(src + r * src_ld + 4 * q)
                   : "memory");
    }
  } else {
    for (int i = threadIdx.x; i < rows * cols; i += kThreads) {
      const int r = i / cols, c = i - r * cols;
      const auto to = static_cast<uint32_t>(__cvta_generic_to_shared(staged + r * ld + c));
      asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(to), "l"(src + r * src_ld + c)
                   : "memory");
    }
  }
}

// Rounds to TF32 in place the values this thread staged with the same StageAsync arguments, once
// they have landed (the cvt.rna each use made before, done once: the same bits); a barrier then
// publishes them to the block.
__device__ __forceinline__ void RoundStaged(uint32_t* staged, int ld, int rows, int cols,
                                            bool aligned) {
  if (aligned) {
    const int quads = cols / 4;
    for (int i = threadIdx.x; i < rows * quads; i += kThreads) {
      const int r = i / quads, q = i - r * quads;
      uint4* quad = reinterpret_cast<uint4*>(staged + r * ld + 4 * q);
      uint4 v = *quad;
      v.x = ToTf32(__uint_as_float(v.x));
      v.y = ToTf32(__uint_as_float(v.y));
      v.z = ToTf32(__uint_as_float(v.z));
      v.w = ToTf32(__uint_as_float(v.w));
      *quad = v;
    }
  } else {
    for (int i = threadIdx.x; i < rows * cols; i += kThreads) {
      const int r = i / cols, c = i - r * cols;
      staged[r * ld + c] = ToTf32(__uint_as_float(staged[r * ld + c]));
    }
  }
}

// Four consecutive elements of a row as floats (exact), from one 16-byte (float32) or 8-byte
// (bfloat16) load: `quad` counts fours.
__device__ __forceinline__ float4 LoadFourAsFloat(const float* row, int quad) {
  return reinterpret_cast<const float4*>(row)[quad];
}
__device__ __forceinline__ float4 LoadFourAsFloat(const uint16_t* row, int quad) {
  const uint2 bits = reinterpret_cast<const uint2*>(row)[quad];
  return make_float4(__uint_as_float(bits.x << 16), __uint_as_float(bits.x & 0xffff0000u),
                     __uint_as_float(bits.y << 16), __uint_as_float(bits.y & 0xffff0000u));
}

// U = x / s for one row (n = n1 x n2 values) into its view (rows of ld floats), or zeros for a row
// past the end: four values a load where the row and s allow the vector loads, else one; the same
// float32 divisions either way. Quad i = a (n2 / 4) + c; (a, c) step with the loop, no division.
template <typename In>
__device__ __forceinline__ void LoadRowView(float* view, int ld, const In* x_row,
                                            const float* divisors, int n, int n2, bool present) {
  const bool vector = present && reinterpret_cast<uintptr_t>(x_row) % (4 * sizeof(In)) == 0 &&
                      reinterpret_cast<uintptr_t>(divisors) % 16 == 0;
  if (vector) {
    const int row_quads = n2 / 4;
    const int step_a = kThreads / row_quads, step_c = kThreads % row_quads;
    int a = threadIdx.x / row_quads, c = threadIdx.x % row_quads;
#pragma unroll 4
    for (int i = threadIdx.x; i < n / 4; i += kThreads) {
      const float4 v = LoadFourAsFloat(x_row, i);
      const float4 s = reinterpret_cast<const float4*>(divisors)[i];
      *reinterpret_cast<float4*>(view + a * ld + 4 * c) = make_float4(
          __fdiv_rn(v.x, s.x), __fdiv_rn(v.y, s.y), __fdiv_rn(v.z, s.z), __fdiv_rn(v.w, s.w));
      a += step_a;
      c += step_c;
      if (c >= row_quads) {
        c -= row_quads;
        ++a;
      }
    }
  } else {
    for (int i = threadIdx.x; i < n; i += kThreads) {
      const int a = i / n2;
      view[a * ld + (i - a * n2)] = present ? __fdiv_rn(LoadAsFloat(x_row, i), divisors[i]) : 0.0f;
    }
  }
}

// kRows token rows per block: stage 2's P2 fragments (the B operand) serve all of them; kTiles
// output tiles per warp and row (kRows * kTiles <= 16 accumulator tiles). kP2Shared: stage 2 reads
// P2 as TF32 bits from shared memory (p.p2_source: staged beside P1 at the start, or over P1 after
// stage 1 in chunks of p.p2_chunk_steps k-steps), else from L2 with __ldg.
// kSplit: the block is one of the p.cluster CTAs of a thread-block cluster that share one token
// row, each computing the output rows of its own 16-row tiles [mt_begin, mt_end) of the n1 / 16
// and quantizing them with the row's scale, the maxima exchanged through distributed shared
// memory. Every output element goes through the same MMAs, in the same k order, either way; only
// which warp of which block issues them changes (kronecker_quantize.h).
template <typename In, int kRows, int kTiles, bool kSplit, bool kP2Shared>
__global__ void __launch_bounds__(kThreads, 1)
    KroneckerQuantizeKernel(const In* x, KroneckerQuantizeParams p) {
  static_assert(!kSplit || kRows == 1, "a cluster shares one token row");
  extern __shared__ __align__(16) float shared[];
  const int n1 = p.n1, n2 = p.n2, n = n1 * n2;
  const int left_steps = n1 / 8, m_tiles = n1 / 16, n_tiles = n2 / 8;
  int rank = 0, mt_begin = 0, mt_end = m_tiles, most_tiles = m_tiles;
  int64_t first_row = static_cast<int64_t>(blockIdx.x) * kRows;
  if constexpr (kSplit) {
    rank = static_cast<int>(cg::this_cluster().block_rank());
    mt_begin = rank * m_tiles / p.cluster;
    mt_end = (rank + 1) * m_tiles / p.cluster;
    most_tiles = (m_tiles + p.cluster - 1) / p.cluster;  // KroneckerQuantizeSplitTiles
    first_row = blockIdx.x / p.cluster;                  // a cluster's CTAs are consecutive
  }
  const int ld = n2 + 4;                    // a row's view: stage 2's A loads hit 32 distinct banks
  const int left_ld = 16 * most_tiles + 8;  // P1's columns: stage 1's A loads likewise
  const int view_floats = n1 * ld;
  // KroneckerQuantizeSharedLayout, from the host.
  float* views = shared;                       // kRows x [n1][ld]: U = x / s, then T in place
  float* left = shared + p.left_offset;        // [n1][left_ld]: P1's columns 16 mt_begin.. as TF32
  float* warp_max = shared + p.maxima_offset;  // [kRows][kWarps]: each row's max, per warp
  float* block_max = warp_max + kRows * kWarps;  // split: this block's max and finiteness
  uint32_t* staged_p2 = reinterpret_cast<uint32_t*>(shared + p.p2_offset);  // [rows][p2_ld]
  const int p2_ld = p.p2_ld;
  const bool p2_beside = kP2Shared && p.p2_source == 1;
  const bool p2_aligned = (reinterpret_cast<uintptr_t>(p.p2) & 15) == 0;
  const int chunk_steps = kP2Shared ? p.p2_chunk_steps : n_tiles;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int g = lane / 4, t = lane % 4;

  // P1's columns, then P2 beside them, copied while the rows load (P2 while stage 1 runs too): two
  // copy groups, the second possibly empty.
  const int left_first = 16 * mt_begin, left_cols = 16 * (mt_end - mt_begin);
  const bool p1_aligned = (reinterpret_cast<uintptr_t>(p.p1) & 15) == 0;
  uint32_t* staged_p1 = reinterpret_cast<uint32_t*>(left);
  StageAsync(staged_p1, left_ld, p.p1 + left_first, n1, n1, left_cols, p1_aligned);
  decode_gemm::CopyAsyncCommit();
  if (p2_beside) StageAsync(staged_p2, p2_ld, p.p2, n2, n2, n2, p2_aligned);
  decode_gemm::CopyAsyncCommit();
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const bool present = first_row + r < p.rows;  // rows past the end compute zeros, unstored
    const In* x_row = x + (present ? first_row + r : 0) * p.x_stride;
    LoadRowView(views + r * view_floats, ld, x_row, p.divisors, n, n2, present);
  }
  decode_gemm::CopyAsyncWait<1>();  // P1's
  RoundStaged(staged_p1, left_ld, n1, left_cols, p1_aligned);
  __syncthreads();

  // Stage 1, T = P1^T U, row by row: each warp owns column blocks of 8 (all n1 rows), so it reads
  // its U columns into registers and writes T over them (this block's row tiles), already rounded
  // to TF32 (stage 2's operand rounding, done once).
  for (int r = 0; r < kRows; ++r) {
    float* view = views + r * view_floats;
    for (int jb = warp; jb < n_tiles; jb += kWarps) {
      uint32_t b[kMaxLeftSteps][2];
#pragma unroll
      for (int k = 0; k < kMaxLeftSteps; ++k) {
        if (k < left_steps) {
          b[k][0] = ToTf32(view[(k * 8 + t) * ld + jb * 8 + g]);
          b[k][1] = ToTf32(view[(k * 8 + t + 4) * ld + jb * 8 + g]);
        }
      }
      __syncwarp();
      for (int mt = mt_begin; mt < mt_end; ++mt) {
        float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int k = 0; k < kMaxLeftSteps; ++k) {
          if (k < left_steps) {
            // A = P1^T: element (a, i) is P1[i][a].
            const float* column = left + (mt - mt_begin) * 16 + g;
            const uint32_t a[4] = {__float_as_uint(column[(k * 8 + t) * left_ld]),
                                   __float_as_uint(column[(k * 8 + t) * left_ld + 8]),
                                   __float_as_uint(column[(k * 8 + t + 4) * left_ld]),
                                   __float_as_uint(column[(k * 8 + t + 4) * left_ld + 8])};
            MmaTf32(c, a, b[k][0], b[k][1]);
          }
        }
        float* out = view + (mt * 16 + g) * ld + jb * 8 + 2 * t;
        out[0] = __uint_as_float(ToTf32(c[0]));
        out[1] = __uint_as_float(ToTf32(c[1]));
        out[8 * ld] = __uint_as_float(ToTf32(c[2]));
        out[8 * ld + 1] = __uint_as_float(ToTf32(c[3]));
      }
    }
  }
  if (p2_beside) {
    decode_gemm::CopyAsyncWait<0>();
    RoundStaged(staged_p2, p2_ld, n2, n2, p2_aligned);
  }
  __syncthreads();

  // Stage 2, Y = T P2: the warps of one 16-row tile of T split its n2 / 8 column tiles, for every
  // row of the block; the outputs stay in registers until each row's scale is known. From L2, the
  // P2 fragments of kGroup k-steps are loaded before their MMAs: one round trip for kGroup steps
  // where a warp's few tiles (one row, as in the split) leave the registers. Staged over P1, P2
  // comes in chunks of k-steps, each copied once the block is done with the one before.
  constexpr int kGroup = kRows == 1 && !kP2Shared ? kKroneckerQuantizeMaxTiles / kTiles : 1;
  const int warps_per_m_tile = kWarps / (mt_end - mt_begin);
  const int mt = mt_begin + warp / warps_per_m_tile, part = warp % warps_per_m_tile;
  const int per_warp = (n_tiles + warps_per_m_tile - 1) / warps_per_m_tile;
  const int nt_begin = part * per_warp;
  const int my_tiles = mt < mt_end ? max(0, min(per_warp, n_tiles - nt_begin)) : 0;
  float acc[kRows][kTiles][4];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int i = 0; i < kTiles; ++i)
      acc[r][i][0] = acc[r][i][1] = acc[r][i][2] = acc[r][i][3] = 0.0f;
  }
  const int t_offset = (mt * 16 + g) * ld + t;
  const float* right = p.p2 + t * n2 + nt_begin * 8 + g;
  for (int k0 = 0; k0 < n_tiles; k0 += chunk_steps) {
    const int k1 = min(n_tiles, k0 + chunk_steps);
    if (kP2Shared && !p2_beside) {
      if (k0 > 0) __syncthreads();  // every warp is done with the chunk before
      StageAsync(staged_p2, p2_ld, p.p2 + k0 * 8 * n2, n2, (k1 - k0) * 8, n2, p2_aligned);
      decode_gemm::CopyAsyncCommit();
      decode_gemm::CopyAsyncWait<0>();
      RoundStaged(staged_p2, p2_ld, (k1 - k0) * 8, n2, p2_aligned);
      __syncthreads();
    }
    if (my_tiles == 0) continue;
    // Fragment (k, i)'s two B registers: rows t and t + 4 of k-step k, column g of tile i.
    const auto load_b = [&](int k, int i, uint32_t(&b)[2]) {
      if constexpr (kP2Shared) {
        const uint32_t* fragment = staged_p2 + ((k - k0) * 8 + t) * p2_ld + (nt_begin + i) * 8 + g;
        b[0] = fragment[0];
        b[1] = fragment[4 * p2_ld];
      } else {
        const float* fragment = right + k * 8 * n2 + i * 8;
        b[0] = ToTf32(__ldg(fragment));
        b[1] = ToTf32(__ldg(fragment + 4 * n2));
      }
    };
    for (int kg = k0; kg < k1; kg += kGroup) {
      uint32_t b[kGroup][kTiles][2];
      if constexpr (kGroup > 1) {
#pragma unroll
        for (int s = 0; s < kGroup; ++s) {
#pragma unroll
          for (int i = 0; i < kTiles; ++i) {
            if (kg + s < k1 && i < my_tiles) load_b(kg + s, i, b[s][i]);
          }
        }
      }
#pragma unroll
      for (int s = 0; s < kGroup; ++s) {
        const int k = kg + s;
        if (k < k1) {
          uint32_t a[kRows][4];
#pragma unroll
          for (int r = 0; r < kRows; ++r) {
            const float* t_rows = views + r * view_floats + t_offset + k * 8;
            a[r][0] = __float_as_uint(t_rows[0]);
            a[r][1] = __float_as_uint(t_rows[8 * ld]);
            a[r][2] = __float_as_uint(t_rows[4]);
            a[r][3] = __float_as_uint(t_rows[8 * ld + 4]);
          }
#pragma unroll
          for (int i = 0; i < kTiles; ++i) {
            if (i < my_tiles) {
              if constexpr (kGroup == 1) load_b(k, i, b[0][i]);
#pragma unroll
              for (int r = 0; r < kRows; ++r) MmaTf32(acc[r][i], a[r], b[s][i][0], b[s][i][1]);
            }
          }
        }
      }
    }
  }

  // The quantizer, per row: max|t| (order-free, so the same over any split), the FP16 scale, the
  // codes.
  bool finite[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    float max_abs = 0.0f;
    finite[r] = true;
#pragma unroll
    for (int i = 0; i < kTiles; ++i) {
      if (i < my_tiles) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          finite[r] = finite[r] && isfinite(acc[r][i][e]);
          max_abs = fmaxf(max_abs, fabsf(acc[r][i][e]));
        }
      }
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      max_abs = fmaxf(max_abs, __shfl_xor_sync(0xffffffffu, max_abs, offset));
    }
    if (lane == 0) warp_max[r * kWarps + warp] = max_abs;
  }
  bool all_finite[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) all_finite[r] = __syncthreads_and(finite[r]);  // also a barrier
  // The row's max over the block's warps (each thread reads them all).
  const auto block_max_of = [&](int r) {
    float max_abs = warp_max[r * kWarps];
    for (int w = 1; w < kWarps; ++w) max_abs = fmaxf(max_abs, warp_max[r * kWarps + w]);
    return max_abs;
  };
  float cluster_max = 0.0f;
  if constexpr (kSplit) {
    // The row's max and finiteness over the cluster: each block publishes its own, and after the
    // cluster barrier (release / acquire) every warp reads all of them, one peer per lane.
    const cg::cluster_group cluster = cg::this_cluster();
    if (threadIdx.x == 0) {
      block_max[0] = block_max_of(0);
      block_max[1] = all_finite[0] ? 1.0f : 0.0f;
    }
    cluster.sync();
    float peer_finite = 1.0f;
    if (lane < p.cluster) {
      const float* peer = cluster.map_shared_rank(block_max, lane);
      cluster_max = peer[0];
      peer_finite = peer[1];
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      cluster_max = fmaxf(cluster_max, __shfl_xor_sync(0xffffffffu, cluster_max, offset));
      peer_finite = fminf(peer_finite, __shfl_xor_sync(0xffffffffu, peer_finite, offset));
    }
    all_finite[0] = peer_finite > 0.0f;
    cluster.barrier_arrive();  // this block is done reading its peers' shared memory
  }
  const bool stores_row = !kSplit || rank == 0;  // the scale and the zero padding: once per row
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int64_t row = first_row + r;
    if (row >= p.rows) break;
    const float max_abs = kSplit ? cluster_max : block_max_of(r);
    const float exact_scale =
        __fdiv_rn(__fmul_rn(max_abs, p.clip_ratio), static_cast<float>(p.qmax));
    uint16_t scale_bits = exact_scale > 0.0f ? ScaleToHalfRoundingUp(exact_scale) : kHalfOne;
    const bool failed = !all_finite[r] || scale_bits >= kHalfInfinity;
    if (failed) scale_bits = kHalfInfinity;
    if (stores_row && threadIdx.x == 0) p.scales[row] = scale_bits;
    const float scale = __half2float(__ushort_as_half(scale_bits));
    int8_t* row_codes = p.codes + row * p.codes_stride;
#pragma unroll
    for (int i = 0; i < kTiles; ++i) {
      if (i < my_tiles) {
        int code[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          code[e] = failed ? 0 : __float2int_rn(__fdiv_rn(acc[r][i][e], scale));
          code[e] = min(max(code[e], -p.qmax), p.qmax);
        }
        const int column = (nt_begin + i) * 8 + 2 * t;
        char2* top = reinterpret_cast<char2*>(row_codes + (mt * 16 + g) * n2 + column);
        char2* bottom = reinterpret_cast<char2*>(row_codes + (mt * 16 + g + 8) * n2 + column);
        *top = make_char2(static_cast<char>(code[0]), static_cast<char>(code[1]));
        *bottom = make_char2(static_cast<char>(code[2]), static_cast<char>(code[3]));
      }
    }
    if (stores_row) {
      for (int64_t i = n + threadIdx.x; i < p.codes_stride; i += kThreads) row_codes[i] = 0;
    }
  }
  if constexpr (kSplit) cg::this_cluster().barrier_wait();  // until no peer reads this block
}

// The kernel, opted into the whole shared memory on the current device (once per device).
template <typename In, int kRows, int kTiles, bool kSplit, bool kP2Shared>
cudaError_t ConfiguredKernel(void (**kernel)(const In*, KroneckerQuantizeParams)) {
  static std::atomic<uint64_t> configured_devices{0};
  *kernel = KroneckerQuantizeKernel<In, kRows, kTiles, kSplit, kP2Shared>;
  return SetMaxDynamicSharedMemoryOncePerDevice(configured_devices, *kernel,
                                                kKroneckerQuantizeMaxSharedBytes);
}

cudaLaunchAttribute ClusterAttribute(int cluster) {
  cudaLaunchAttribute attribute;
  attribute.id = cudaLaunchAttributeClusterDimension;
  attribute.val.clusterDim.x = static_cast<unsigned>(cluster);
  attribute.val.clusterDim.y = 1;
  attribute.val.clusterDim.z = 1;
  return attribute;
}

template <typename In, int kRows, int kTiles, bool kSplit, bool kP2Shared>
cudaError_t Launch(const In* x, const KroneckerQuantizeParams& p, cudaStream_t stream) {
  void (*kernel)(const In*, KroneckerQuantizeParams) = nullptr;
  if (const cudaError_t error = ConfiguredKernel<In, kRows, kTiles, kSplit, kP2Shared>(&kernel);
      error != cudaSuccess) {
    return error;
  }
  if constexpr (!kSplit) {
    const auto blocks = static_cast<unsigned>((p.rows + kRows - 1) / kRows);
    kernel<<<blocks, kThreads, p.shared_bytes, stream>>>(x, p);
    return cudaGetLastError();
  } else {
    cudaLaunchAttribute cluster = ClusterAttribute(p.cluster);
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(static_cast<unsigned>(p.rows * p.cluster));
    config.blockDim = dim3(kThreads);
    config.dynamicSmemBytes = p.shared_bytes;
    config.stream = stream;
    config.attrs = &cluster;
    config.numAttrs = 1;
    const cudaError_t error = cudaLaunchKernelEx(&config, kernel, x, p);
    if (error != cudaSuccess) (void)cudaGetLastError();
    return error;
  }
}

template <typename In, int kRows, int kTiles, bool kSplit>
cudaError_t LaunchP2(const In* x, const KroneckerQuantizeParams& p, cudaStream_t stream) {
  return p.p2_source != 0 ? Launch<In, kRows, kTiles, kSplit, true>(x, p, stream)
                          : Launch<In, kRows, kTiles, kSplit, false>(x, p, stream);
}

template <typename In>
cudaError_t LaunchSplit(const In* x, const KroneckerQuantizeParams& p, cudaStream_t stream) {
  const int64_t tiles =
      KroneckerQuantizeTilesPerWarp(p.n1, p.n2, KroneckerQuantizeSplitTiles(p.n1, p.cluster));
  if (tiles <= 2) return LaunchP2<In, 1, 2, true>(x, p, stream);
  if (tiles <= 4) return LaunchP2<In, 1, 4, true>(x, p, stream);
  if (tiles <= 8) return LaunchP2<In, 1, 8, true>(x, p, stream);
  return LaunchP2<In, 1, 16, true>(x, p, stream);
}

template <typename In>
cudaError_t LaunchRows(const In* x, const KroneckerQuantizeParams& p, cudaStream_t stream) {
  if (p.cluster > 1) return LaunchSplit(x, p, stream);
  switch (p.rows_per_block) {
    case 4:
      return LaunchP2<In, 4, 4, false>(x, p, stream);
    case 2:
      return LaunchP2<In, 2, 8, false>(x, p, stream);
    default:
      return LaunchP2<In, 1, 16, false>(x, p, stream);
  }
}

}  // namespace

int KroneckerQuantizeActiveClusters(int cluster) {
  if (cluster < 1 || cluster > kKroneckerQuantizeMaxCluster) return 0;
  static std::atomic<int> known[64][kKroneckerQuantizeMaxCluster + 1] =
      {};  // count + 1; 0: unasked
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return 0;
  const bool cached = device >= 0 && device < 64;
  if (cached) {
    if (const int known_count = known[device][cluster].load(std::memory_order_acquire);
        known_count != 0) {
      return known_count - 1;
    }
  }
  // Every split kernel runs one CTA per SM (512 threads of more than 64 registers), so one
  // instantiation at the most shared memory answers for all of them.
  void (*kernel)(const uint16_t*, KroneckerQuantizeParams) = nullptr;
  int count = 0;
  cudaLaunchAttribute attribute = ClusterAttribute(cluster);
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(cluster));
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = kKroneckerQuantizeMaxSharedBytes;
  config.attrs = &attribute;
  config.numAttrs = 1;
  if (ConfiguredKernel<uint16_t, 1, 2, true, false>(&kernel) != cudaSuccess ||
      cudaOccupancyMaxActiveClusters(&count, kernel, &config) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;  // not remembered: asked again next time
  }
  if (cached) known[device][cluster].store(count + 1, std::memory_order_release);
  return count;
}

cudaError_t LaunchKroneckerQuantize(const KroneckerQuantizeParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  return p.x_is_bf16 ? LaunchRows(static_cast<const uint16_t*>(p.x), p, stream)
                     : LaunchRows(static_cast<const float*>(p.x), p, stream);
}

}  // namespace flatfleet::cuda::internal
