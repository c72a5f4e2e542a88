#include "worker/serving/partial_text_releaser.h"

#include <algorithm>

namespace flatfleet::engine {

size_t StopPrefixHoldBack(std::string_view text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const std::string& stop : stops) {
    // Only suffixes longer than what is held already can raise it.
    const size_t longest = std::min(text.size(), stop.empty() ? 0 : stop.size() - 1);
    for (size_t length = longest; length > hold; --length) {
      if (text.substr(text.size() - length) == std::string_view(stop).substr(0, length)) {
        hold = length;
        break;
      }
    }
  }
  return hold;
}

PartialTextReleaser::PartialTextReleaser(const tokenizer::Tokenizer& tokenizer,
                                         std::vector<std::string> stops)
    : stops_(stops), matcher_(tokenizer, std::move(stops)) {}

std::string PartialTextReleaser::Append(int32_t token) {
  if (stopped_) return {};
  const std::string& text = matcher_.text();
  size_t safe;
  if (std::optional<size_t> stop_at = matcher_.Append(token)) {
    // The final text ends where the stop string starts.
    stopped_ = true;
    safe = *stop_at;
  } else {
    safe = text.size() - StopPrefixHoldBack(text, stops_);
  }
  if (safe <= released_) return {};
  std::string out = text.substr(released_, safe - released_);
  released_ = safe;
  return out;
}

}  // namespace flatfleet::engine
