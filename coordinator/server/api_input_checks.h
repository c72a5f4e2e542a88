// Checks of public API fields that the JSONL parser does not see: batch options (metadata,
// attempts, idempotency key), Generate's sampling numbers and StreamResults' start. Each bad
// field is an INVALID_ARGUMENT naming it, so no input can grow the store or a reply unbounded.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "flatfleet/v1/batch.pb.h"

namespace flatfleet::coordinator {

// As OpenAI's Batch API: at most 16 metadata pairs, keys of at most 64 bytes, values of at
// most 512.
inline constexpr int kMaxMetadataPairs = 16;
inline constexpr size_t kMaxMetadataKeyBytes = 64;
inline constexpr size_t kMaxMetadataValueBytes = 512;
// A request dispatched more often than this is poison, not unlucky.
inline constexpr uint32_t kMaxAttemptsLimit = 100;
inline constexpr size_t kMaxIdempotencyKeyBytes = 256;

absl::Status CheckBatchOptions(const v1::BatchOptions& options);
// temperature and top_p must be finite (JSON cannot carry NaN or infinities, gRPC can).
absl::Status CheckSamplingNumbers(const v1::SamplingParams& sampling);
// The start must fit the store's signed sequence numbers.
absl::Status CheckStartSequence(uint64_t start_sequence);

}  // namespace flatfleet::coordinator
