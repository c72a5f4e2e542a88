// The text of a streamed request as it may be sent: completion tokens go in one at a time and
// what comes out is only text that can no longer change the final response. It is decoded
// incrementally (IncrementalStopMatcher) and holds back a tail that could be the start of a
// stop string, so no text that later turns out to belong to a stop string is ever released,
// and everything released is a prefix of the request's final text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/tokenizer/tokenizer.h"
#include "worker/sampling/stop_conditions.h"

namespace flatfleet::engine {

// The length of the longest suffix of `text` that is a proper prefix of one of `stops`: the
// bytes that must wait for the next token before they can be sent.
size_t StopPrefixHoldBack(std::string_view text, const std::vector<std::string>& stops);

class PartialTextReleaser {
 public:
  PartialTextReleaser(const tokenizer::Tokenizer& tokenizer, std::vector<std::string> stops);

  // Adds a completion token (one that is part of the text: not a stop id) and returns the text
  // newly safe to send (often empty). After a stop string completes it returns nothing more.
  std::string Append(int32_t token);

  size_t released_bytes() const { return released_; }

 private:
  std::vector<std::string> stops_;
  IncrementalStopMatcher matcher_;
  size_t released_ = 0;
  bool stopped_ = false;
};

}  // namespace flatfleet::engine
