// tokenizer.json pre-tokenizers: split normalized text into the words the model encodes one at
// a time. Supported: Sequence, Split, ByteLevel, Metaspace, Digits, Whitespace,
// WhitespaceSplit; any other type is rejected with an error naming it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tokenizer/json_fields.h"

namespace flatfleet::tokenizer {

struct PreToken {
  std::string text;
  // The piece begins at the very start of the input (Metaspace's prepend_scheme "first").
  bool at_input_start = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces every piece by the pieces it splits into (empty pieces are dropped).
  virtual absl::Status Apply(std::vector<PreToken>& pieces) const = 0;
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const Json& json,
                                                                std::string_view field,
                                                                int depth = 0);

}  // namespace flatfleet::tokenizer
