#include "worker/sampling/stop_conditions.h"

#include <algorithm>

namespace flatfleet::engine {
namespace {

constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace

std::vector<int32_t> StopIds(const SamplingParams& params, std::span<const int32_t> eos_ids) {
  std::vector<int32_t> ids;
  auto add = [&](int32_t id) {
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  };
  for (int32_t id : params.stop_token_ids) add(id);
  if (!params.ignore_eos) {
    for (int32_t id : eos_ids) add(id);
  }
  return ids;
}

std::optional<size_t> FindStopString(std::string_view text, std::span<const std::string> stops) {
  std::optional<size_t> earliest;
  for (const std::string& stop : stops) {
    if (stop.empty()) continue;
    const size_t at = text.find(stop);
    if (at != std::string_view::npos && (!earliest || at < *earliest)) earliest = at;
  }
  return earliest;
}

IncrementalStopMatcher::IncrementalStopMatcher(const tokenizer::Tokenizer& tokenizer,
                                               std::vector<std::string> stops)
    : tokenizer_(tokenizer), stops_(std::move(stops)) {
  for (const std::string& stop : stops_) longest_stop_ = std::max(longest_stop_, stop.size());
}

std::optional<size_t> IncrementalStopMatcher::Append(int32_t token) {
  tokens_.push_back(token);
  const std::span<const int32_t> tokens(tokens_);
  const std::string before =
      tokenizer_.Decode(tokens.subspan(prefix_offset_, read_offset_ - prefix_offset_),
                        /*skip_special_tokens=*/true);
  const std::string after =
      tokenizer_.Decode(tokens.subspan(prefix_offset_), /*skip_special_tokens=*/true);
  // Wait while the new tokens end inside a multi-byte character (decoded as U+FFFD).
  if (after.size() <= before.size() || after.ends_with(kReplacementCharacter)) return std::nullopt;
  const size_t old_size = text_.size();
  text_.append(after, before.size());
  prefix_offset_ = read_offset_;
  read_offset_ = tokens_.size();
  if (longest_stop_ == 0) return std::nullopt;
  const size_t from = old_size >= longest_stop_ - 1 ? old_size - (longest_stop_ - 1) : 0;
  std::optional<size_t> at = FindStopString(std::string_view(text_).substr(from), stops_);
  if (at) *at += from;
  return at;
}

}  // namespace flatfleet::engine
