// The tokenizer.json "post_processor" reduced to what single-sequence encoding needs: the ids
// put before and after the sequence when add_special_tokens is set (TemplateProcessing,
// BertProcessing, RobertaProcessing; ByteLevel only trims offsets and adds nothing).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer/json_fields.h"

namespace flatfleet::tokenizer {

struct SpecialTokenFrame {
  std::vector<int32_t> prefix;
  std::vector<int32_t> suffix;
};

// A null `json` gives an empty frame.
absl::StatusOr<SpecialTokenFrame> ParsePostProcessor(const Json& json, std::string_view field,
                                                     int depth = 0);

}  // namespace flatfleet::tokenizer
