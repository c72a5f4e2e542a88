// tokenizer.json decoders: turn the token strings of an id sequence back into text.
// Supported: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer/json_fields.h"

namespace flatfleet::tokenizer {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Rewrites the token strings in place (HF's decode_chain); the result is their concatenation.
  virtual void DecodeChain(std::vector<std::string>& tokens) const = 0;
};

absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const Json& json, std::string_view field,
                                                      int depth = 0);

}  // namespace flatfleet::tokenizer
