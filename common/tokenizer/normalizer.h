// tokenizer.json normalizers: text rewrites applied before pre-tokenization. Supported: Prepend,
// Replace, Sequence (what Llama-2/Mistral exports use); others, NFC included, are rejected.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/tokenizer/json_fields.h"

namespace flatfleet::tokenizer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual absl::StatusOr<std::string> Normalize(std::string text) const = 0;
};

// Parses the "normalizer" object at `field`; depth guards nested Sequences.
absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const Json& json,
                                                            std::string_view field, int depth = 0);

}  // namespace flatfleet::tokenizer
