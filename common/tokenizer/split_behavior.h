// How a Split-style pre-tokenizer turns pattern matches into pieces (HF's
// SplitDelimiterBehavior), shared by Split, Metaspace, Digits and the whitespace splitters.
#pragma once

#include <cstddef>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace flatfleet::tokenizer {

enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext, kContiguous };

absl::StatusOr<SplitBehavior> ParseSplitBehavior(std::string_view name);

// Given non-overlapping, sorted, non-empty `matches` inside a text of `length` bytes, returns
// the non-empty byte ranges the text splits into. `invert` swaps matches and gaps first.
std::vector<std::pair<size_t, size_t>> SplitRanges(
    size_t length, const std::vector<std::pair<size_t, size_t>>& matches, SplitBehavior behavior,
    bool invert);

}  // namespace flatfleet::tokenizer
