#include "coordinator/bounded_line_reader.h"

#include <algorithm>
#include <cstring>

namespace flatfleet::coordinator {
namespace {

constexpr size_t kChunkBytes = 64 << 10;

}  // namespace

bool BoundedLineReader::Fill() {
  if (in_.bad() || in_.eof()) return false;
  buffer_.resize(kChunkBytes);
  in_.read(buffer_.data(), static_cast<std::streamsize>(buffer_.size()));
  buffer_.resize(static_cast<size_t>(in_.gcount()));
  position_ = 0;
  return !buffer_.empty();
}

bool BoundedLineReader::Next(BoundedLine& line) {
  line = BoundedLine{};
  bool any = false;
  while (true) {
    if (position_ == buffer_.size() && !Fill()) return any;
    any = true;
    const char* start = buffer_.data() + position_;
    const size_t available = buffer_.size() - position_;
    const void* newline = std::memchr(start, '\n', available);
    const size_t piece = newline == nullptr ? available : static_cast<const char*>(newline) - start;
    line.bytes += piece;
    if (!line.oversized && line.bytes > max_line_bytes_) {
      line.oversized = true;
      std::string().swap(line.text);
    }
    if (!line.oversized) line.text.append(start, piece);
    position_ += piece;
    if (newline != nullptr) {
      ++position_;  // The '\n'.
      return true;
    }
  }
}

}  // namespace flatfleet::coordinator
