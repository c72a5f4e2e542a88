// Fuzzes the bounded line reader that splits input files (CreateBatch input_path) into lines
// before the JSONL parser sees them: any bytes must split without crashing, every line it
// keeps must be exactly the input's, an oversized line must be reported by its true length,
// and the lines (kept or by size) must go through the parser consistently.
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>

#include "coordinator/batch_input_parser.h"
#include "coordinator/bounded_line_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flatfleet::coordinator;
  const std::string text(reinterpret_cast<const char*>(data), size);
  // The first byte picks the bound, so the fuzzer reaches it from both sides.
  const uint64_t bound = size == 0 ? 1 : 1 + data[0] % 64;
  std::istringstream in(text);
  BoundedLineReader reader(in, bound);
  BatchInputLimits limits;
  limits.max_line_bytes = bound;
  limits.max_lines = 32;
  BatchInputParser parser(limits);
  size_t offset = 0;
  int64_t lines = 0;
  BoundedLine line;
  while (reader.Next(line)) {
    ++lines;
    const size_t newline = text.find('\n', offset);
    const size_t end = newline == std::string::npos ? text.size() : newline;
    if (line.bytes != end - offset) std::abort();
    if (line.oversized != (line.bytes > bound)) std::abort();
    if (line.oversized) {
      if (!line.text.empty()) std::abort();
      parser.AddOversizedLine(line.bytes);
    } else {
      if (std::string_view(line.text) != std::string_view(text).substr(offset, end - offset)) {
        std::abort();
      }
      parser.AddLine(line.text);
    }
    offset = newline == std::string::npos ? text.size() : newline + 1;
  }
  if (reader.failed() || offset != text.size()) std::abort();
  const ParsedBatch parsed = std::move(parser).Finish();
  if (parsed.lines_read != lines) std::abort();
  return 0;
}
