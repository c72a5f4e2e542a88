// Fuzzes the OpenAI batch JSONL parser: any bytes must parse without crashing or throwing, and
// what it accepts must be self-consistent.
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "coordinator/batch_input_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using flatfleet::coordinator::BatchInputLimits;
  using flatfleet::coordinator::ParsedBatch;
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  // Small limits so the fuzzer reaches them.
  BatchInputLimits limits;
  limits.max_line_bytes = 4096;
  limits.max_lines = 64;
  limits.max_stop_sequences = 2;
  limits.max_messages = 8;
  limits.max_tokens_cap = 1000;
  limits.max_reported_errors = 16;
  const ParsedBatch parsed = flatfleet::coordinator::ParseBatchInput(text, limits);

  if (parsed.errors.size() > limits.max_reported_errors) std::abort();
  if (parsed.errors.size() > parsed.error_count) std::abort();
  if (parsed.requests.size() > limits.max_lines) std::abort();
  std::set<std::string> custom_ids;
  int64_t previous_line = 0;
  for (const auto& request : parsed.requests) {
    if (request.line_number <= previous_line || request.line_number > parsed.lines_read) {
      std::abort();
    }
    previous_line = request.line_number;
    if (request.custom_id.empty() || !custom_ids.insert(request.custom_id).second) std::abort();
    if (request.sampling.max_tokens < 1 || request.sampling.max_tokens > limits.max_tokens_cap) {
      std::abort();
    }
    if (request.sampling.stop.size() > limits.max_stop_sequences) std::abort();
    if (request.body_json.empty()) std::abort();
  }
  for (const auto& error : parsed.errors) {
    if (error.line_number < 1 || error.line_number > parsed.lines_read) std::abort();
  }
  // Invalid lines become failed results: one per line, in order, never a valid line's number,
  // and any custom_id they echo is unique across the whole job.
  if (parsed.requests.size() + parsed.invalid_lines.size() > limits.max_lines) std::abort();
  if (parsed.invalid_lines.size() + (parsed.too_many_lines ? 1 : 0) != parsed.error_count) {
    std::abort();
  }
  std::set<int64_t> request_lines;
  for (const auto& request : parsed.requests) request_lines.insert(request.line_number);
  previous_line = 0;
  for (const auto& invalid : parsed.invalid_lines) {
    if (invalid.line_number <= previous_line || request_lines.contains(invalid.line_number)) {
      std::abort();
    }
    previous_line = invalid.line_number;
    if (invalid.custom_id && !custom_ids.insert(*invalid.custom_id).second) std::abort();
    if (flatfleet::coordinator::DescribeLineError(invalid).empty()) std::abort();
  }
  return 0;
}
