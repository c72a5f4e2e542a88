// Bounds on an uploaded batch, so that one job cannot exhaust the coordinator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace flatfleet::coordinator {

struct BatchInputLimits {
  size_t max_line_bytes = 1 << 20;
  size_t max_lines = 50'000;  // Request lines; blank lines do not count.
  size_t max_custom_id_bytes = 256;
  uint32_t max_tokens_cap = 32'768;
  uint32_t default_max_tokens = 256;  // When a line gives neither max_tokens form.
  size_t max_stop_sequences = 4;
  size_t max_stop_sequence_bytes = 256;
  size_t max_messages = 256;
  uint32_t max_top_k = 1'000'000;
  // Errors kept in ParsedBatch::errors; the rest are only counted.
  size_t max_reported_errors = 100;
  // When non-empty, a line whose body names another "model" is rejected.
  std::string expected_model;
};

}  // namespace flatfleet::coordinator
