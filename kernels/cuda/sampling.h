// Token sampling on the GPU: one token id (and optionally its logprob) per row of logits, so only
// ids leave the device. Semantics of engine::Sampler (worker/sampling/sampler.h):
//   * temperature <= 0: greedy, the first index of the largest logit (bit-exact with
//     engine::Argmax, including ties and a NaN at index 0);
//   * otherwise: logits / temperature, keep the top_k most likely, then the smallest most-likely
//     set whose probability (renormalised over the top-k set) reaches top_p, renormalise and draw.
// Differences from the CPU sampler, all at measure-zero boundaries or below 1e-12:
//   * ties at a cut: every token whose logit equals the k-th largest (top-k) or the top-p
//     threshold's logit is kept (the CPU keeps ties in id order up to exactly k / the threshold);
//   * probabilities are exp((x - max) / T) rounded to multiples of 2^-40 (the top token weighs
//     exactly 1), so tokens less likely than ~4.5e-13 relative to the top token are never drawn
//     and the sums are exact integers: the thresholds and the draw do not depend on summation
//     order, hence on nothing but the row itself;
//   * the random draw is Philox4_32_10 (curand) keyed by the request's seed with subsequence
//     `step`, so a request's token depends only on its logits, parameters, seed and step, never
//     on the batch or its row;
//   * logprobs: float32 max and log-sum-exp whose order of summation is fixed by the element
//     indices alone (never by the row's address or stride), so the same row gives bit-identical
//     logprobs at any batch position;
//   * NaN logits count as never-drawn (-inf); a row whose largest logit is +inf or NaN, or whose
//     1 / temperature is not finite, is decoded greedily; top_p <= 0 keeps only the most likely
//     token(s).
// No sorting: max and log-sum-exp by block reduction, the top-k and top-p thresholds by radix
// select on the logits' order-preserving 32-bit keys (count and mass histograms), the draw by an
// inverse-CDF search in index order. One 1024-thread block per row; no workspace.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"

namespace flatfleet::cuda {

enum class SamplingAlgorithm {
  kRadixSelect,  // default: 8-bit radix select, 4 passes per threshold
  kBisection,    // reference: bisection on the key, one pass per step (<= 32 per threshold)
};

struct DeviceSampling {
  const float* logits = nullptr;  // [rows, vocab] with logits_row_stride, device memory
  int64_t rows = 0;
  int64_t vocab = 0;              // 1 ... 2^23
  int64_t logits_row_stride = 0;  // elements; 0: vocab
  // Per-row parameters, device memory, [rows] each; a null array means its default for every row.
  const float* temperature = nullptr;  // <= 0: greedy (default 0)
  const int32_t* top_k = nullptr;      // <= 0 or >= vocab: off (default)
  const float* top_p = nullptr;        // >= 1: off (default 1)
  const uint64_t* seed = nullptr;      // default 0
  const uint64_t* step = nullptr;      // the request's count of sampled tokens so far; default 0
  int32_t* tokens = nullptr;           // [rows]
  // Optional [rows]: log-softmax of the chosen id under the raw logits (temperature 1), as the
  // OpenAI API reports logprobs.
  float* logprobs = nullptr;
  // Optional: rows drawn from a processed copy of their logits (penalties and min_tokens
  // masking, logit_penalties.h). Row r with processed_row[r] = j >= 0 draws from
  // processed_logits + j * vocab (dense rows); its logprob stays under the raw row. Both null:
  // every row draws from its raw logits.
  const float* processed_logits = nullptr;
  const int32_t* processed_row = nullptr;  // [rows], device memory; -1: the raw row
  SamplingAlgorithm algorithm = SamplingAlgorithm::kRadixSelect;
};

// Validates the arguments (InvalidArgument naming the field) and enqueues on `stream`.
absl::Status SampleTokens(const DeviceSampling& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
