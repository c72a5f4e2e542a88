#include "worker/collectives/compressed_all_reduce_reference.h"

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace flatfleet::collectives {
namespace {

absl::StatusOr<Int8Blocks> Quantize(absl::Span<const float> values, int block_size) {
  Int8Blocks blocks;
  blocks.codes.resize(values.size());
  blocks.scales.resize(NumBlocks(values.size(), block_size));
  FF_RETURN_IF_ERROR(QuantizeBlocks(values, block_size, absl::MakeSpan(blocks.codes),
                                    absl::MakeSpan(blocks.scales)));
  return blocks;
}

}  // namespace

absl::StatusOr<CompressedAllReduceTrace> CompressedAllReduceReference(
    const std::vector<std::vector<float>>& inputs, int block_size) {
  if (inputs.empty()) return absl::InvalidArgumentError("need at least one rank");
  if (block_size <= 0) return absl::InvalidArgumentError("block_size must be positive");
  const size_t num_elements = inputs[0].size();
  CompressedAllReduceTrace trace;
  trace.sums.assign(num_elements, 0.0f);
  for (size_t r = 0; r < inputs.size(); ++r) {
    if (inputs[r].size() != num_elements) {
      return absl::InvalidArgumentError(absl::StrFormat("rank %d has %d elements, rank 0 has %d", r,
                                                        inputs[r].size(), num_elements));
    }
    FF_ASSIGN_OR_RETURN(Int8Blocks quantized, Quantize(inputs[r], block_size));
    AccumulateDequantizedBlocks(quantized.codes, quantized.scales, block_size,
                                absl::MakeSpan(trace.sums));
    trace.rank_inputs.push_back(std::move(quantized));
  }
  FF_ASSIGN_OR_RETURN(trace.reduced, Quantize(trace.sums, block_size));
  trace.output.resize(num_elements);
  DequantizeBlocks(trace.reduced.codes, trace.reduced.scales, block_size,
                   absl::MakeSpan(trace.output));
  return trace;
}

float CompressedAllReduceErrorBound(const CompressedAllReduceTrace& trace, int block_size,
                                    int64_t element) {
  const int64_t block = element / block_size;
  double bound = trace.reduced.scales[block] / 2.0;
  for (const Int8Blocks& input : trace.rank_inputs) bound += input.scales[block] / 2.0;
  return static_cast<float>(bound);
}

}  // namespace flatfleet::collectives
