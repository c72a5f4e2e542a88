// Bounds on what one render may do, so that no template or input can hang or exhaust the
// process: output size, size of any string or list it builds, loop iterations, macro call
// depth, and a work budget charged by every operation that copies data.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace flatfleet::chat_template {

struct RenderLimits {
  size_t max_output_bytes = size_t{4} << 20;
  size_t max_string_bytes = size_t{4} << 20;
  size_t max_list_items = size_t{1} << 20;
  int64_t max_loop_iterations = 1'000'000;
  int max_call_depth = 64;
  // Bytes copied plus 16 per list item copied plus 16 per loop iteration.
  uint64_t max_work_units = uint64_t{256} << 20;
};

class WorkBudget {
 public:
  explicit WorkBudget(const RenderLimits& limits) : limits_(limits) {}

  const RenderLimits& limits() const { return limits_; }

  absl::Status ChargeString(size_t bytes) {
    if (bytes > limits_.max_string_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "a string of ", bytes, " bytes exceeds the limit of ", limits_.max_string_bytes));
    }
    return Charge(bytes);
  }
  absl::Status ChargeItems(size_t items) {
    if (items > limits_.max_list_items) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "a list of ", items, " items exceeds the limit of ", limits_.max_list_items));
    }
    return Charge(uint64_t{items} * 16);
  }
  absl::Status ChargeIteration() {
    if (++iterations_ > limits_.max_loop_iterations) {
      return absl::ResourceExhaustedError(
          absl::StrCat("more than ", limits_.max_loop_iterations, " loop iterations"));
    }
    return Charge(16);
  }

 private:
  absl::Status Charge(uint64_t units) {
    work_ += units;
    if (work_ > limits_.max_work_units) {
      return absl::ResourceExhaustedError("the template exceeded its work budget");
    }
    return absl::OkStatus();
  }

  const RenderLimits& limits_;
  uint64_t work_ = 0;
  int64_t iterations_ = 0;
};

}  // namespace flatfleet::chat_template
