#include "coordinator/server/api_input_checks.h"

#include <cmath>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"

namespace flatfleet::coordinator {
namespace {

// The first bytes of a client's string, for an error message.
std::string Quote(const std::string& text) {
  constexpr size_t kShown = 40;
  return text.size() <= kShown ? absl::StrCat("'", text, "'")
                               : absl::StrCat("'", text.substr(0, kShown), "...'");
}

}  // namespace

absl::Status CheckBatchOptions(const v1::BatchOptions& options) {
  if (options.metadata_size() > kMaxMetadataPairs) {
    return absl::InvalidArgumentError(absl::StrCat("options.metadata has ", options.metadata_size(),
                                                   " pairs; at most ", kMaxMetadataPairs,
                                                   " are allowed"));
  }
  for (const auto& [key, value] : options.metadata()) {
    if (key.size() > kMaxMetadataKeyBytes) {
      return absl::InvalidArgumentError(absl::StrCat("options.metadata key ", Quote(key), " is ",
                                                     key.size(), " bytes; at most ",
                                                     kMaxMetadataKeyBytes, " are allowed"));
    }
    if (value.size() > kMaxMetadataValueBytes) {
      return absl::InvalidArgumentError(absl::StrCat("options.metadata[", Quote(key), "] is ",
                                                     value.size(), " bytes; at most ",
                                                     kMaxMetadataValueBytes, " are allowed"));
    }
  }
  if (options.max_attempts() > kMaxAttemptsLimit) {
    return absl::InvalidArgumentError(absl::StrCat("options.max_attempts is ",
                                                   options.max_attempts(), "; at most ",
                                                   kMaxAttemptsLimit, " are allowed"));
  }
  if (options.idempotency_key().size() > kMaxIdempotencyKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("options.idempotency_key is ", options.idempotency_key().size(),
                     " bytes; at most ", kMaxIdempotencyKeyBytes, " are allowed"));
  }
  return absl::OkStatus();
}

absl::Status CheckSamplingNumbers(const v1::SamplingParams& sampling) {
  if (sampling.has_temperature() && !std::isfinite(sampling.temperature())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "body.sampling.temperature must be a finite number, got ", sampling.temperature()));
  }
  if (sampling.has_top_p() && !std::isfinite(sampling.top_p())) {
    return absl::InvalidArgumentError(
        absl::StrCat("body.sampling.top_p must be a finite number, got ", sampling.top_p()));
  }
  return absl::OkStatus();
}

absl::Status CheckStartSequence(uint64_t start_sequence) {
  if (start_sequence > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat("start_sequence ", start_sequence,
                                                   " is beyond any result (at most 2^63 - 1)"));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::coordinator
