// The tensor-core paged-attention kernel (FlashAttention-2 structure on mma.sync m16n8k16 bf16),
// instantiated as the split-K decode kernel (paged_attention_decode.cu) and the prefill kernel
// (paged_attention_prefill.cu).
//
// Rows. A CTA works on the q rows of one sequence and one KV head g, packed as
// row = query * group + j (query head g * group + j), so each K/V element it loads serves every
// query head of the group. Row r belongs to query r / group and sees positions
// <= context - num_queries + r / group (rows past the sequence's end are zero-filled padding: they
// see every position of the range, stay finite, and are never written).
//
// Tiles. K/V tiles of 64 positions are gathered through the block table into shared memory
// (bf16: 16-byte cp.async into a ring of kStages buffers; INT8: 16-byte loads of codes into
// registers one tile ahead, converted exactly to bf16 (|code| <= 127 fits bf16's 8-bit
// significand) and stored as bf16, with the per-position scales as floats). Each warp owns 16 rows
// (warp_m) and 64 / kWarpsN columns of the tile (warp_n):
//   S = Q K^T       Q fragments in registers, K by ldmatrix (rows = positions, k = head_dim)
//   online softmax  float32, base-2 (scores pre-multiplied by scale * log2(e)); INT8 scores also
//                   by scale_k[position]
//   O += P V        P rounded to bf16 in registers (INT8: p * scale_v[position] first), V by
//                   ldmatrix.trans; O accumulates in float32
// Shared rows are padded by 16 bytes so the eight row addresses of an ldmatrix hit different
// banks. Tiles are visited from the last to the first, so only the first few need the causal
// mask.
//
// Decode (kWarpsM = 1, kWarpsN = 4): CTA (split, KV head x row tile, sequence) covers one split of
// the context; the four warps each take 16 columns of every tile and are merged through shared
// memory at the end; the CTA writes the bf16 output (one split) or a float32 partial (normalized
// O and log2-sum-exp) that the combine kernel folds. Prefill (kWarpsM = 8, kWarpsN = 1): CTA
// (KV head, sequence, row tile) covers 128 packed rows over every tile it can see, heaviest row
// tiles first.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/cuda/paged_attention_common.cuh"
// tests/gpu/warp_emulator.h runs this kernel on the host with its own versions of these.
#ifndef FLATFLEET_HOST_WARP_EMULATION
#include "kernels/cuda/warp_mma.cuh"
#endif

namespace flatfleet::cuda::internal::flash {

// Two floats as bf16x2 (round to nearest even), `lo` in the low half.
__device__ __forceinline__ uint32_t PackBf16x2(float lo, float hi) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
  uint32_t bits;
  memcpy(&bits, &pair, sizeof(bits));
  return bits;
}

// Four int8 codes (one 32-bit word, code k in byte k) as two exact bf16x2 words: codes 0, 1 and
// codes 2, 3. Each byte b of w ^ 0x80808080 is code + 128; as the low byte of the float
// 0x4B0000bb it reads 2^23 + code + 128, and subtracting 2^23 + 128 leaves the code exactly.
__device__ __forceinline__ void Int8x4ToBf16(uint32_t w, uint32_t& lo, uint32_t& hi) {
  const uint32_t biased = w ^ 0x80808080u;
  constexpr float kBias = 8388736.0f;  // 2^23 + 128
  const float c0 = __uint_as_float(__byte_perm(biased, 0x4B000000u, 0x7440)) - kBias;
  const float c1 = __uint_as_float(__byte_perm(biased, 0x4B000000u, 0x7441)) - kBias;
  const float c2 = __uint_as_float(__byte_perm(biased, 0x4B000000u, 0x7442)) - kBias;
  const float c3 = __uint_as_float(__byte_perm(biased, 0x4B000000u, 0x7443)) - kBias;
  lo = PackBf16x2(c0, c1);
  hi = PackBf16x2(c2, c3);
}

// ---- Configuration ------------------------------------------------------------------------------

template <int kHeadDim_, bool kInt8_, int kWarpsM_, int kWarpsN_, int kStages_, int kMinBlocks_>
struct FlashConfig {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr bool kInt8 = kInt8_;
  static constexpr int kWarpsM = kWarpsM_, kWarpsN = kWarpsN_;
  // INT8 tiles are double-buffered through registers, whatever kStages says.
  static constexpr int kStages = kInt8 ? 2 : kStages_;
  static constexpr int kMinBlocks = kMinBlocks_;
  static constexpr int kThreads = 32 * kWarpsM * kWarpsN;
  static constexpr int kRows = 16 * kWarpsM;       // packed q rows per CTA
  static constexpr int kTileN = kAttentionTileN;   // positions per K/V tile
  static constexpr int kWarpN = kTileN / kWarpsN;  // tile columns per warp
  static constexpr int kNTiles = kWarpN / 8;       // n8 tiles of S per warp
  static constexpr int kKChunks = kHeadDim / 16;   // k16 steps of Q K^T
  static constexpr int kDTiles = kHeadDim / 8;     // n8 tiles of O per warp
  static constexpr int kRowStride = kHeadDim + 8;  // bf16 elements (16 bytes of padding)
  static constexpr int kTileBytes = kTileN * kRowStride * 2;
  static constexpr int kScaleBytes = kInt8 ? kTileN * 4 : 0;
  static constexpr int kStageBytes = 2 * kTileBytes + 2 * kScaleBytes;  // K, V (+ their scales)
  static constexpr int kQBytes = kRows * kRowStride * 2;
  static constexpr int kSmemBytes = kQBytes + kStages * kStageBytes;
  // INT8 register staging: 16-byte chunks of codes per thread for each of K and V.
  static constexpr int kInt8Chunks = kTileN * (kHeadDim / 16) / kThreads;

  static_assert(kHeadDim == 64 || kHeadDim == 128, "tensor-core head_dim");
  static_assert(kWarpN % 16 == 0, "a warp's columns are whole k16 steps of P V");
  static_assert(kStages >= 2, "at least double buffering");
  static_assert(!kInt8 || kInt8Chunks * kThreads == kTileN * (kHeadDim / 16),
                "INT8 chunks spread evenly");
  static_assert(!kInt8 || kThreads >= 2 * kTileN, "one thread per K and per V scale");
  // The decode merge reuses shared memory: per-warp O in the stage buffers, (m, l) in the Q area.
  static_assert(kWarpsN == 1 || kWarpsM == 1, "split columns only with one row tile");
  static_assert(kWarpsN * 16 * kHeadDim * 4 <= kStages * kStageBytes, "merge buffer fits");
  static_assert((kWarpsN + 1) * 16 * 2 * 4 <= kQBytes, "merge statistics fit");
};

// One stage buffer: K and V tiles as bf16 [kTileN][kRowStride] (+ INT8 scales as floats).
template <class C>
struct KvStage {
  __nv_bfloat16* keys;
  __nv_bfloat16* values;
  float* key_scales;
  float* value_scales;
};

template <class C>
__device__ __forceinline__ KvStage<C> StageAt(unsigned char* stages, int index) {
  unsigned char* base = stages + index * C::kStageBytes;
  KvStage<C> stage;
  stage.keys = reinterpret_cast<__nv_bfloat16*>(base);
  stage.values = reinterpret_cast<__nv_bfloat16*>(base + C::kTileBytes);
  stage.key_scales = reinterpret_cast<float*>(base + 2 * C::kTileBytes);
  stage.value_scales = reinterpret_cast<float*>(base + 2 * C::kTileBytes + C::kScaleBytes);
  return stage;
}

// What a CTA needs to gather a tile: its table row, KV head, and the end of its position range.
struct TileSource {
  const int32_t* table;
  int kv_head;
  int kv_end;  // positions >= kv_end are zero-filled, never read
};

// bf16: one K/V tile into `stage` with cp.async (the caller commits the group).
template <class C>
__device__ __forceinline__ void CopyTileAsync(const PagedAttentionArgs& p, const TileSource& src,
                                              int tile_start, const KvStage<C>& stage) {
  constexpr int kChunksPerRow = C::kHeadDim / 8;
  constexpr int kIterations = C::kTileN * kChunksPerRow / C::kThreads;
  static_assert(kIterations * C::kThreads == C::kTileN * kChunksPerRow, "chunks spread evenly");
  const auto* keys = static_cast<const __nv_bfloat16*>(p.cache.keys);
  const auto* values = static_cast<const __nv_bfloat16*>(p.cache.values);
  FF_UNROLL
  for (int i = 0; i < kIterations; ++i) {
    const int c = threadIdx.x + i * C::kThreads;
    const int row = c / kChunksPerRow, chunk = c % kChunksPerRow;
    const int pos = tile_start + row;
    const bool valid = pos < src.kv_end;
    int64_t offset = 0;
    if (valid) {
      offset = (SlotOf(p, src.table, pos) * p.num_kv_heads + src.kv_head) * C::kHeadDim + chunk * 8;
    }
    const int shared_offset = row * C::kRowStride + chunk * 8;
    CopyAsync16(SharedAddress(stage.keys + shared_offset), keys + offset, valid);
    CopyAsync16(SharedAddress(stage.values + shared_offset), values + offset, valid);
  }
}

// INT8: one tile's codes and scales held in registers between the global loads and the
// conversion into a stage buffer.
template <class C>
struct Int8TileRegisters {
  uint4 keys[C::kInt8Chunks];
  uint4 values[C::kInt8Chunks];
  float scale;  // thread t < kTileN: K scale of row t; kTileN <= t < 2 kTileN: V scale of row t-64

  __device__ __forceinline__ void Load(const PagedAttentionArgs& p, const TileSource& src,
                                       int tile_start) {
    constexpr int kChunksPerRow = C::kHeadDim / 16;
    const auto* key_codes = static_cast<const int8_t*>(p.cache.keys);
    const auto* value_codes = static_cast<const int8_t*>(p.cache.values);
    FF_UNROLL
    for (int i = 0; i < C::kInt8Chunks; ++i) {
      const int c = threadIdx.x + i * C::kThreads;
      const int row = c / kChunksPerRow, chunk = c % kChunksPerRow;
      const int pos = tile_start + row;
      keys[i] = make_uint4(0, 0, 0, 0);
      values[i] = make_uint4(0, 0, 0, 0);
      if (pos < src.kv_end) {
        const int64_t offset =
            (SlotOf(p, src.table, pos) * p.num_kv_heads + src.kv_head) * C::kHeadDim + chunk * 16;
        keys[i] = __ldg(reinterpret_cast<const uint4*>(key_codes + offset));
        values[i] = __ldg(reinterpret_cast<const uint4*>(value_codes + offset));
      }
    }
    scale = 0.0f;
    const int t = threadIdx.x;
    if (t < 2 * C::kTileN) {
      const bool is_value = t >= C::kTileN;
      const int pos = tile_start + (is_value ? t - C::kTileN : t);
      if (pos < src.kv_end) {
        const uint16_t* scales = is_value ? p.cache.value_scales : p.cache.key_scales;
        scale = HalfBitsToFloat(
            __ldg(scales + SlotOf(p, src.table, pos) * p.num_kv_heads + src.kv_head));
      }
    }
  }

  __device__ __forceinline__ void Store(const KvStage<C>& stage) const {
    constexpr int kChunksPerRow = C::kHeadDim / 16;
    FF_UNROLL
    for (int i = 0; i < C::kInt8Chunks; ++i) {
      const int c = threadIdx.x + i * C::kThreads;
      const int row = c / kChunksPerRow, chunk = c % kChunksPerRow;
      const int shared_offset = row * C::kRowStride + chunk * 16;
      StoreChunk(keys[i], stage.keys + shared_offset);
      StoreChunk(values[i], stage.values + shared_offset);
    }
    const int t = threadIdx.x;
    if (t < C::kTileN) {
      stage.key_scales[t] = scale;
    } else if (t < 2 * C::kTileN) {
      stage.value_scales[t - C::kTileN] = scale;
    }
  }

  // 16 codes -> 16 bf16 (32 bytes, two 16-byte stores).
  __device__ __forceinline__ static void StoreChunk(const uint4& codes, __nv_bfloat16* out) {
    uint4 first, second;
    Int8x4ToBf16(codes.x, first.x, first.y);
    Int8x4ToBf16(codes.y, first.z, first.w);
    Int8x4ToBf16(codes.z, second.x, second.y);
    Int8x4ToBf16(codes.w, second.z, second.w);
    reinterpret_cast<uint4*>(out)[0] = first;
    reinterpret_cast<uint4*>(out)[1] = second;
  }
};

// ---- One warp's work on one tile ----------------------------------------------------------------

template <class C>
struct WarpState {
  uint32_t q[C::kKChunks][4];  // A fragments of the warp's 16 rows
  float o[C::kDTiles][4];      // C fragments of O (rows lane / 4 and lane / 4 + 8)
  float m[2];                  // running max (base 2) of the thread's two rows
  float l[2];                  // running sum of this thread's columns (quad-reduced at the end)
};

// Folds tile columns [warp_n * kWarpN, +kWarpN) of `stage` (positions tile_start + column) into the
// warp's state. `limit` is the last visible position of each of the thread's two rows; only tiles
// with `masked` set compare against it.
template <class C>
__device__ __forceinline__ void AttendTile(WarpState<C>& st, const KvStage<C>& stage,
                                           int tile_start, bool masked, const int (&limit)[2],
                                           float scale_log2, int lane, int warp_n) {
  const int col0 = warp_n * C::kWarpN;
  float s[C::kNTiles][4];
  FF_UNROLL
  for (int j = 0; j < C::kNTiles; ++j) {
    FF_UNROLL
    for (int e = 0; e < 4; ++e) s[j][e] = 0.0f;
  }

  // S = Q K^T. ldmatrix.x4 matrices: (n-tile j, k 0-7), (j, k 8-15), (j + 1, k 0-7),
  // (j + 1, k 8-15), i.e. b0/b1 of two n8 tiles.
  const uint32_t keys = SharedAddress(stage.keys);
  FF_UNROLL
  for (int kc = 0; kc < C::kKChunks; ++kc) {
    FF_UNROLL
    for (int j = 0; j < C::kNTiles; j += 2) {
      const int row = col0 + j * 8 + (lane % 8) + 8 * (lane / 16);
      const int col = kc * 16 + 8 * ((lane / 8) % 2);
      uint32_t b[4];
      LoadMatrixX4(keys + (row * C::kRowStride + col) * 2, b);
      MmaBf16(s[j], st.q[kc], b[0], b[1]);
      MmaBf16(s[j + 1], st.q[kc], b[2], b[3]);
    }
  }

  // Scale (and mask); element e of n-tile j is row lane / 4 + 8 * (e / 2), column
  // col0 + 8 j + 2 (lane % 4) + e % 2.
  FF_UNROLL
  for (int j = 0; j < C::kNTiles; ++j) {
    FF_UNROLL
    for (int e = 0; e < 4; ++e) {
      const int col = col0 + j * 8 + 2 * (lane % 4) + (e % 2);
      float x = s[j][e] * scale_log2;
      if constexpr (C::kInt8) x *= stage.key_scales[col];
      if (masked && tile_start + col > limit[e / 2]) x = -INFINITY;
      s[j][e] = x;
    }
  }

  // Online softmax per row. A row with nothing visible yet keeps max -inf; its base is then 0 so
  // that exp2(-inf - base) = 0 instead of NaN.
  FF_UNROLL
  for (int h = 0; h < 2; ++h) {
    float tile_max = -INFINITY;
    FF_UNROLL
    for (int j = 0; j < C::kNTiles; ++j)
      tile_max = fmaxf(tile_max, fmaxf(s[j][2 * h], s[j][2 * h + 1]));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
    const float new_max = fmaxf(st.m[h], tile_max);
    const float base = new_max == -INFINITY ? 0.0f : new_max;
    const float rescale = exp2f(st.m[h] - base);
    st.m[h] = new_max;
    float sum = 0.0f;
    FF_UNROLL
    for (int j = 0; j < C::kNTiles; ++j) {
      FF_UNROLL
      for (int e = 2 * h; e < 2 * h + 2; ++e) {
        const float p = exp2f(s[j][e] - base);
        s[j][e] = p;
        sum += p;
      }
    }
    st.l[h] = st.l[h] * rescale + sum;
    FF_UNROLL
    for (int dt = 0; dt < C::kDTiles; ++dt) {
      st.o[dt][2 * h] *= rescale;
      st.o[dt][2 * h + 1] *= rescale;
    }
  }

  // O += P V. The A fragment of k16 step kk is the C fragments of S n-tiles 2 kk and 2 kk + 1;
  // ldmatrix.trans matrices: (positions 0-7, d-tile dt), (8-15, dt), (0-7, dt + 1), (8-15, dt + 1).
  const uint32_t values = SharedAddress(stage.values);
  FF_UNROLL
  for (int kk = 0; kk < C::kWarpN / 16; ++kk) {
    if constexpr (C::kInt8) {
      FF_UNROLL
      for (int half = 0; half < 2; ++half) {
        const int col = col0 + kk * 16 + half * 8 + 2 * (lane % 4);
        const float v0 = stage.value_scales[col], v1 = stage.value_scales[col + 1];
        s[2 * kk + half][0] *= v0;
        s[2 * kk + half][1] *= v1;
        s[2 * kk + half][2] *= v0;
        s[2 * kk + half][3] *= v1;
      }
    }
    uint32_t a[4];
    a[0] = PackBf16x2(s[2 * kk][0], s[2 * kk][1]);
    a[1] = PackBf16x2(s[2 * kk][2], s[2 * kk][3]);
    a[2] = PackBf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
    a[3] = PackBf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    FF_UNROLL
    for (int dt = 0; dt < C::kDTiles; dt += 2) {
      const int row = col0 + kk * 16 + (lane % 8) + 8 * ((lane / 8) % 2);
      const int col = dt * 8 + 8 * (lane / 16);
      uint32_t b[4];
      LoadMatrixX4Transposed(values + (row * C::kRowStride + col) * 2, b);
      MmaBf16(st.o[dt], a, b[0], b[1]);
      MmaBf16(st.o[dt + 1], a, b[2], b[3]);
    }
  }
}

// Element offset of packed row r (query r / group, head kv_head * group + r % group) in q/out.
__device__ __forceinline__ int64_t RowOffset(const PagedAttentionArgs& p, int q_begin, int kv_head,
                                             int r) {
  const int64_t q_row = q_begin + r / p.group;
  return (q_row * p.num_heads + kv_head * p.group + r % p.group) * p.head_dim;
}

// ---- The kernel ---------------------------------------------------------------------------------

template <class C, bool kDecode>
__global__ void __launch_bounds__(C::kThreads, C::kMinBlocks)
    PagedFlashAttentionKernel(const PagedAttentionArgs p) {
  static_assert(!kDecode || C::kWarpsM == 1, "decode CTAs hold one m16 row tile");
  extern __shared__ __align__(16) unsigned char smem[];
  auto* q_tile = reinterpret_cast<__nv_bfloat16*>(smem);
  unsigned char* stages = smem + C::kQBytes;

  // ---- Work item and position range.
  int seq, kv_head, row_tile, split = 0;
  if constexpr (kDecode) {
    split = blockIdx.x;
    kv_head = blockIdx.y / p.decode_row_tiles;
    row_tile = blockIdx.y % p.decode_row_tiles;
    seq = blockIdx.z;
  } else {
    kv_head = blockIdx.x;
    seq = blockIdx.y;
    row_tile = gridDim.z - 1 - blockIdx.z;  // the longest (last) row tiles start first
  }
  const int q_begin = p.query_starts[seq];
  const int num_queries = p.query_starts[seq + 1] - q_begin;
  if (num_queries <= 0 || IsDecodeSequence(p, num_queries) != kDecode) return;
  const int rows = num_queries * p.group;
  const int row0 = row_tile * C::kRows;
  if (row0 >= rows) return;
  const int context = p.context_lengths[seq];
  const int kv_length = KvLength(p, seq);
  // Causal: row r sees positions <= visible_base + r / group.
  const int visible_base = context - num_queries;
  int kv_begin = 0, kv_end;
  if constexpr (kDecode) {
    const int split_length = DecodeSplitLength(kv_length, p.num_splits);
    kv_begin = split * split_length;
    if (split > 0 && kv_begin >= kv_length) return;  // beyond this sequence's context
    kv_end = min(kv_length, kv_begin + split_length);
  } else {
    const int last_query = (min(row0 + C::kRows, rows) - 1) / p.group;
    kv_end = max(0, min(kv_length, visible_base + last_query + 1));
  }
  const int num_tiles = kv_end > kv_begin ? (kv_end - kv_begin + C::kTileN - 1) / C::kTileN : 0;
  // Tiles reaching past this position need the mask (for some row of the CTA).
  const int first_limit = min(visible_base + row0 / p.group, kv_end - 1);

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int warp_m = warp % C::kWarpsM, warp_n = warp / C::kWarpsM;
  int limit[2];
  FF_UNROLL
  for (int h = 0; h < 2; ++h) {
    const int r = row0 + warp_m * 16 + lane / 4 + 8 * h;
    limit[h] = min(visible_base + r / p.group, kv_end - 1);
  }
  const TileSource source{p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_sequence,
                          kv_head, kv_end};
  const float scale_log2 = p.scale * 1.4426950408889634f;  // log2(e)

  // ---- Q tile (zero rows past the sequence's end).
  {
    constexpr int kChunksPerRow = C::kHeadDim / 8;
    constexpr int kIterations = C::kRows * kChunksPerRow / C::kThreads;
    static_assert(kIterations * C::kThreads == C::kRows * kChunksPerRow, "chunks spread evenly");
    FF_UNROLL
    for (int i = 0; i < kIterations; ++i) {
      const int c = tid + i * C::kThreads;
      const int r_local = c / kChunksPerRow, chunk = c % kChunksPerRow;
      const int r = row0 + r_local;
      const bool valid = r < rows;
      const __nv_bfloat16* src = valid ? p.q + RowOffset(p, q_begin, kv_head, r) + chunk * 8 : p.q;
      CopyAsync16(SharedAddress(q_tile + r_local * C::kRowStride + chunk * 8), src, valid);
    }
    CopyAsyncCommit();
  }

  WarpState<C> st;
  FF_UNROLL
  for (int dt = 0; dt < C::kDTiles; ++dt) {
    FF_UNROLL
    for (int e = 0; e < 4; ++e) st.o[dt][e] = 0.0f;
  }
  st.m[0] = st.m[1] = -INFINITY;
  st.l[0] = st.l[1] = 0.0f;

  auto load_q_fragments = [&]() {
    FF_UNROLL
    for (int kc = 0; kc < C::kKChunks; ++kc) {
      const int row = warp_m * 16 + (lane % 8) + 8 * ((lane / 8) % 2);
      const int col = kc * 16 + 8 * (lane / 16);
      LoadMatrixX4(SharedAddress(q_tile + row * C::kRowStride + col), st.q[kc]);
    }
  };
  // Iteration `it` visits tile num_tiles - 1 - it (last first).
  auto tile_start = [&](int it) { return kv_begin + (num_tiles - 1 - it) * C::kTileN; };

  // ---- Main loop.
  if constexpr (!C::kInt8) {
    FF_NO_UNROLL
    for (int s = 0; s < C::kStages - 1; ++s) {
      if (s < num_tiles) CopyTileAsync<C>(p, source, tile_start(s), StageAt<C>(stages, s));
      CopyAsyncCommit();
    }
    FF_NO_UNROLL
    for (int it = 0; it < num_tiles; ++it) {
      CopyAsyncWait<C::kStages - 2>();  // the Q tile and tile `it` have landed
      __syncthreads();                  // ... for every thread; stage (it - 1) is free again
      if (it == 0) load_q_fragments();
      const int next = it + C::kStages - 1;
      if (next < num_tiles) {
        CopyTileAsync<C>(p, source, tile_start(next), StageAt<C>(stages, next % C::kStages));
      }
      CopyAsyncCommit();
      const int start = tile_start(it);
      AttendTile<C>(st, StageAt<C>(stages, it % C::kStages), start,
                    start + C::kTileN - 1 > first_limit, limit, scale_log2, lane, warp_n);
    }
  } else {
    Int8TileRegisters<C> staged;
    if (num_tiles > 0) staged.Load(p, source, tile_start(0));
    CopyAsyncWait<0>();
    if (num_tiles > 0) staged.Store(StageAt<C>(stages, 0));
    __syncthreads();
    load_q_fragments();
    FF_NO_UNROLL
    for (int it = 0; it < num_tiles; ++it) {
      const bool more = it + 1 < num_tiles;
      if (more) staged.Load(p, source, tile_start(it + 1));  // in flight during this tile
      const int start = tile_start(it);
      AttendTile<C>(st, StageAt<C>(stages, it % 2), start, start + C::kTileN - 1 > first_limit,
                    limit, scale_log2, lane, warp_n);
      // Stage (it + 1) % 2 was last read by tile it - 1, which every warp finished before the
      // barrier that ended the previous iteration.
      if (more) staged.Store(StageAt<C>(stages, (it + 1) % 2));
      __syncthreads();
    }
  }
  CopyAsyncWait<0>();

  // Row sums over the quad (the four threads sharing a row).
  FF_UNROLL
  for (int h = 0; h < 2; ++h) {
    st.l[h] += __shfl_xor_sync(0xffffffffu, st.l[h], 1);
    st.l[h] += __shfl_xor_sync(0xffffffffu, st.l[h], 2);
  }

  if constexpr (!kDecode) {
    // ---- Prefill: every CTA covers its rows' whole range; write the bf16 output.
    FF_UNROLL
    for (int h = 0; h < 2; ++h) {
      const int r = row0 + warp_m * 16 + lane / 4 + 8 * h;
      if (r >= rows) continue;
      const float inv = st.l[h] > 0.0f ? 1.0f / st.l[h] : 0.0f;
      __nv_bfloat16* out = p.out + RowOffset(p, q_begin, kv_head, r);
      FF_UNROLL
      for (int dt = 0; dt < C::kDTiles; ++dt) {
        const int d = dt * 8 + 2 * (lane % 4);
        *reinterpret_cast<__nv_bfloat162*>(out + d) =
            __floats2bfloat162_rn(st.o[dt][2 * h] * inv, st.o[dt][2 * h + 1] * inv);
      }
    }
  } else {
    // ---- Decode: merge the kWarpsN column groups, then write the output or the split's partial.
    __syncthreads();  // every warp is done with the stage buffers and the Q tile
    float* warp_stats = reinterpret_cast<float*>(smem);   // [kWarpsN][16][m, l]
    float* row_stats = warp_stats + C::kWarpsN * 16 * 2;  // [16][M, L]
    float* warp_out = reinterpret_cast<float*>(stages);   // [kWarpsN][16][kHeadDim]
    if (lane % 4 == 0) {
      FF_UNROLL
      for (int h = 0; h < 2; ++h) {
        const int row = lane / 4 + 8 * h;
        warp_stats[(warp_n * 16 + row) * 2] = st.m[h];
        warp_stats[(warp_n * 16 + row) * 2 + 1] = st.l[h];
      }
    }
    __syncthreads();
    FF_UNROLL
    for (int h = 0; h < 2; ++h) {
      const int row = lane / 4 + 8 * h;
      float merged_max = -INFINITY;
      FF_UNROLL
      for (int w = 0; w < C::kWarpsN; ++w)
        merged_max = fmaxf(merged_max, warp_stats[(w * 16 + row) * 2]);
      const float base = merged_max == -INFINITY ? 0.0f : merged_max;
      float merged_sum = 0.0f;
      FF_UNROLL
      for (int w = 0; w < C::kWarpsN; ++w) {
        merged_sum +=
            warp_stats[(w * 16 + row) * 2 + 1] * exp2f(warp_stats[(w * 16 + row) * 2] - base);
      }
      const float factor = exp2f(st.m[h] - base);
      FF_UNROLL
      for (int dt = 0; dt < C::kDTiles; ++dt) {
        const int d = dt * 8 + 2 * (lane % 4);
        float* dst = warp_out + (warp_n * 16 + row) * C::kHeadDim + d;
        dst[0] = st.o[dt][2 * h] * factor;
        dst[1] = st.o[dt][2 * h + 1] * factor;
      }
      if (warp_n == 0 && lane % 4 == 0) {
        row_stats[row * 2] = merged_max;
        row_stats[row * 2 + 1] = merged_sum;
      }
    }
    __syncthreads();
    const int64_t slot =
        (static_cast<int64_t>(blockIdx.z) * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    for (int e = tid; e < kDecodeTileRows * C::kHeadDim; e += C::kThreads) {
      const int row = e / C::kHeadDim, d = e % C::kHeadDim;
      const int r = row0 + row;
      if (r >= rows) continue;
      float sum = 0.0f;
      FF_UNROLL
      for (int w = 0; w < C::kWarpsN; ++w) sum += warp_out[(w * 16 + row) * C::kHeadDim + d];
      const float total = row_stats[row * 2 + 1];
      const float value = total > 0.0f ? sum / total : 0.0f;
      if (p.num_splits == 1) {
        p.out[RowOffset(p, q_begin, kv_head, r) + d] = __float2bfloat16_rn(value);
      } else {
        p.partial_out[(slot * kDecodeTileRows + row) * C::kHeadDim + d] = value;
        if (d == 0) {
          p.partial_lse[slot * kDecodeTileRows + row] =
              total > 0.0f ? row_stats[row * 2] + log2f(total) : -INFINITY;
        }
      }
    }
  }
}

// The two instantiations (paged_attention_decode.cu, paged_attention_prefill.cu).
// Decode: one m16 row tile, four warps splitting each tile's columns; 74 KB of shared memory
// (two 64-position K/V stages of 34 KB + Q), three CTAs per SM.
template <int kHeadDim, bool kInt8>
using DecodeConfig = FlashConfig<kHeadDim, kInt8, /*kWarpsM=*/1, /*kWarpsN=*/4, /*kStages=*/2,
                                 /*kMinBlocks=*/3>;
// Prefill: eight warps of 16 rows; 102 KB (Q 34 KB + two stages), about 210 registers, so one
// CTA of eight warps per SM.
template <int kHeadDim, bool kInt8>
using PrefillConfig = FlashConfig<kHeadDim, kInt8, /*kWarpsM=*/kPrefillTileRows / 16,
                                  /*kWarpsN=*/1, /*kStages=*/2, /*kMinBlocks=*/1>;

}  // namespace flatfleet::cuda::internal::flash
