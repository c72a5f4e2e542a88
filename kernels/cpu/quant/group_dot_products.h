// The integer core of the quantized CPU GEMMs (quantized_gemm.h's integer part): for activation
// row m and weight row n, the int32 sums over each weight group g of
//   (x code - x zero)[m, k] * (w code - w zero)[n, k],   k in g.
// Computed in tiles on the process thread pool, where the scalar definition re-centred every
// element through QuantizedMatrix::Centered on one thread: activations centred into int16 once;
// from two activation rows on (AVX2, even group sizes), the weights' raw codes are packed per
// tile of 16 rows into K-interleaved int16 panels and a 6 x 16 register tile of vpmaddwd
// accumulators (one lane per weight row, as the float GEMM's 4 x 16) runs over each group. Integer
// sums are exact in any order, so every sum equals the scalar definition's bit for bit whatever the
// tiling or the number of threads; the float epilogues that fold them stay per output element, in
// their order.
#pragma once

#include <cstdint>

#include "absl/functional/function_ref.h"
#include "kernels/cpu/quant/quantized_matrix.h"

namespace flatfleet::quant {

// Receives activation row m's sums for weight rows [n_begin, n_end), group-major so that a fold
// can run over consecutive weight rows in vectors: sums[g * group_stride + (n - n_begin)], with
// group_stride >= n_end - n_begin. Calls for disjoint (m, n) ranges run concurrently on the pool's
// threads: each must write only its own outputs.
using GroupSumsFold = absl::FunctionRef<void(int64_t m, int64_t n_begin, int64_t n_end,
                                             const int32_t* sums, int64_t group_stride)>;

// Requires CheckInt32Gemm(activations, weights) to hold (shapes, per-token activations, no int32
// overflow); calls `fold` once for every (m, tile of n).
void ForEachGroupDotProducts(const QuantizedMatrix& activations, const QuantizedMatrix& weights,
                             GroupSumsFold fold);

// Row `row` of `matrix` centred: out[c] = Centered(row, c) for c in [0, cols).
void CenterRow(const QuantizedMatrix& matrix, int64_t row, int16_t* out);

}  // namespace flatfleet::quant
