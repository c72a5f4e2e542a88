#include "kernels/step_batch.h"

#include <algorithm>

namespace flatfleet::kernels {

int64_t StepBatch::max_query_length() const {
  int64_t longest = 0;
  for (const StepSequence& s : sequences) longest = std::max(longest, s.num_queries);
  return longest;
}

int64_t StepBatch::max_context_length() const {
  int64_t longest = 0;
  for (const StepSequence& s : sequences) longest = std::max(longest, s.context_length);
  return longest;
}

int64_t StepBatch::max_blocks_per_sequence() const {
  int64_t longest = 0;
  for (const StepSequence& s : sequences) longest = std::max(longest, s.num_blocks);
  return longest;
}

}  // namespace flatfleet::kernels
