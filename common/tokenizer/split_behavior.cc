#include "common/tokenizer/split_behavior.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/tokenizer/absl_string_view.h"

namespace flatfleet::tokenizer {
namespace {

struct Segment {
  size_t begin;
  size_t end;
  bool is_match;
};

}  // namespace

absl::StatusOr<SplitBehavior> ParseSplitBehavior(std::string_view name) {
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat("unknown split behavior '", AbslView(name), "'"));
}

std::vector<std::pair<size_t, size_t>> SplitRanges(
    size_t length, const std::vector<std::pair<size_t, size_t>>& matches, SplitBehavior behavior,
    bool invert) {
  // The whole text as alternating gap/match segments.
  std::vector<Segment> segments;
  size_t previous_end = 0;
  for (const auto& [begin, end] : matches) {
    if (begin > previous_end) segments.push_back({previous_end, begin, false});
    segments.push_back({begin, end, true});
    previous_end = end;
  }
  if (previous_end < length) segments.push_back({previous_end, length, false});
  if (invert) {
    for (auto& segment : segments) segment.is_match = !segment.is_match;
  }

  std::vector<Segment> merged;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      merged = segments;
      break;
    case SplitBehavior::kRemoved:
      for (const auto& segment : segments) {
        if (!segment.is_match) merged.push_back(segment);
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const auto& segment : segments) {
        if (segment.is_match && !previous_match && !merged.empty()) {
          merged.back().end = segment.end;
        } else {
          merged.push_back(segment);
        }
        previous_match = segment.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
        if (it->is_match && !previous_match && !merged.empty()) {
          merged.back().begin = it->begin;
        } else {
          merged.push_back(*it);
        }
        previous_match = it->is_match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    case SplitBehavior::kContiguous:
      for (const auto& segment : segments) {
        if (segment.is_match == previous_match && !merged.empty()) {
          merged.back().end = segment.end;
        } else {
          merged.push_back(segment);
        }
        previous_match = segment.is_match;
      }
      break;
  }
  std::vector<std::pair<size_t, size_t>> ranges;
  ranges.reserve(merged.size());
  for (const auto& segment : merged) {
    if (segment.end > segment.begin) ranges.emplace_back(segment.begin, segment.end);
  }
  return ranges;
}

}  // namespace flatfleet::tokenizer
