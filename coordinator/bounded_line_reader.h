// Reads a stream line by line without ever holding more than a bound of one line: a longer
// line is skipped to its end and reported by size only, so a huge file without newlines cannot
// exhaust memory before the line-size check.
#pragma once

#include <cstdint>
#include <istream>
#include <string>

namespace flatfleet::coordinator {

struct BoundedLine {
  std::string text;        // Without '\n'; empty when oversized.
  uint64_t bytes = 0;      // The line's full length.
  bool oversized = false;  // Longer than the reader's bound.
};

class BoundedLineReader {
 public:
  BoundedLineReader(std::istream& in, uint64_t max_line_bytes)
      : in_(in), max_line_bytes_(max_line_bytes) {}

  // The next line; false at the end of the input or on a read error (see failed()). A final
  // line without '\n' counts.
  bool Next(BoundedLine& line);
  // True when reading stopped on an I/O error rather than at the end.
  bool failed() const { return in_.bad(); }

 private:
  // Refills the buffer; false when nothing more can be read.
  bool Fill();

  std::istream& in_;
  const uint64_t max_line_bytes_;
  std::string buffer_;
  size_t position_ = 0;
};

}  // namespace flatfleet::coordinator
