// Parses and validates OpenAI batch input (JSONL, one request per line):
//   {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions",
//    "body": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 64}}
// A bad line yields a LineError (line number, field, message) and parsing goes on with the
// next line, so one upload reports all its problems. See docs/API.md for the accepted fields.
//
// Policy: "method" and "url" may be absent (the endpoint then follows from the body having
// "prompt" or "messages"), but when present must be "POST" and a supported URL. Types are
// strict (no numbers in strings, no floats for integers); null counts as absent for optional
// parameters. Unknown fields are rejected rather than silently ignored, so a misspelt
// parameter ("temprature") cannot change results unnoticed; a few OpenAI fields with no effect
// here are tolerated ("model", "user", "n" when 1, "stream" when false).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "coordinator/batch_input_limits.h"
#include "coordinator/batch_request.h"

namespace flatfleet::coordinator {

struct ParsedBatch {
  std::vector<BatchRequestLine> requests;  // The valid lines, in input order.
  std::vector<LineError> errors;           // At most limits.max_reported_errors of them.
  size_t error_count = 0;                  // All errors, reported or not.
  int64_t lines_read = 0;                  // Including blank lines.
  // Every invalid request line, in input order (at most limits.max_lines of them), for the
  // job's failed results. The line-count error below is not among them.
  std::vector<LineError> invalid_lines;
  // More than limits.max_lines request lines: the upload as a whole is rejected.
  bool too_many_lines = false;

  bool ok() const { return error_count == 0; }
};

class BatchInputParser {
 public:
  explicit BatchInputParser(BatchInputLimits limits = {});

  // One line, without its '\n' (a trailing '\r' is dropped). Blank lines are skipped but
  // counted, so line numbers match the file.
  void AddLine(std::string_view line);
  // A line known only by its length (`bytes`, above every limit a reader or client applies),
  // e.g. one too long to upload in a message: counted as a request line that is too long.
  void AddOversizedLine(uint64_t bytes);
  // A whole document: lines split on '\n'; a final line without '\n' counts.
  void AddText(std::string_view text);

  ParsedBatch Finish() &&;

 private:
  // Counts a non-blank line; false (after reporting it once) when it is over the line limit.
  bool CountRequestLine(int64_t line_number);
  // Records an invalid request line; `custom_id` is the id its error result echoes, if any.
  void AddError(int64_t line_number, std::string field, std::string message,
                std::optional<std::string> custom_id = std::nullopt);

  BatchInputLimits limits_;
  ParsedBatch parsed_;
  size_t request_lines_ = 0;  // Non-blank lines seen.
  absl::flat_hash_map<std::string, int64_t> custom_id_lines_;
};

// Convenience: parses a whole document in one go.
ParsedBatch ParseBatchInput(std::string_view text, const BatchInputLimits& limits = {});

}  // namespace flatfleet::coordinator
