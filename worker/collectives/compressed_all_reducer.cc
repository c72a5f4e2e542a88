#include "worker/collectives/compressed_all_reducer.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace flatfleet::collectives {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Rank r owns blocks [r * blocks / size, (r + 1) * blocks / size): balanced, whole blocks.
struct OwnedRange {
  int64_t first_block;
  int64_t end_block;
  int64_t first_element;
  int64_t end_element;
};

OwnedRange OwnedBy(int rank, int size, int64_t num_elements, int block_size) {
  const int64_t blocks = NumBlocks(num_elements, block_size);
  OwnedRange range;
  range.first_block = rank * blocks / size;
  range.end_block = (rank + 1) * blocks / size;
  range.first_element = range.first_block * block_size;
  range.end_element = std::min(range.end_block * block_size, num_elements);
  return range;
}

// A slot carries one chunk: `max_blocks * block_size` code bytes, then `max_blocks` float scales.
// Every slot has the same size because the communicator's all-to-all and all-gather need it.
struct SlotLayout {
  int64_t max_blocks;
  int64_t scales_offset;
  int64_t bytes;
};

SlotLayout MakeSlotLayout(int size, int64_t num_elements, int block_size) {
  const int64_t blocks = NumBlocks(num_elements, block_size);
  SlotLayout layout;
  layout.max_blocks = (blocks + size - 1) / size;
  layout.scales_offset = layout.max_blocks * block_size;
  layout.bytes = layout.scales_offset + layout.max_blocks * static_cast<int64_t>(sizeof(float));
  return layout;
}

void PackChunk(const Int8Blocks& blocks, const OwnedRange& range, const SlotLayout& layout,
               std::byte* slot) {
  std::memcpy(slot, blocks.codes.data() + range.first_element,
              range.end_element - range.first_element);
  std::memcpy(slot + layout.scales_offset, blocks.scales.data() + range.first_block,
              (range.end_block - range.first_block) * sizeof(float));
}

// Views a packed slot as codes and scales of `range`'s size (scales copied out: may be unaligned).
struct ChunkView {
  absl::Span<const int8_t> codes;
  std::vector<float> scales;
};

ChunkView UnpackChunk(const std::byte* slot, const OwnedRange& range, const SlotLayout& layout) {
  ChunkView view;
  view.codes = absl::MakeConstSpan(reinterpret_cast<const int8_t*>(slot),
                                   range.end_element - range.first_element);
  view.scales.resize(range.end_block - range.first_block);
  std::memcpy(view.scales.data(), slot + layout.scales_offset, view.scales.size() * sizeof(float));
  return view;
}

int64_t RingAllReduceBytes(int size, int64_t payload_bytes) {
  return 2 * (size - 1) * payload_bytes / size;
}

}  // namespace

CompressedAllReducer::CompressedAllReducer(Communicator& communicator,
                                           CompressedAllReduceOptions options)
    : communicator_(communicator), options_(options) {}

absl::Status CompressedAllReducer::AllReduceSum(absl::Span<float> data) {
  if (options_.block_size <= 0) return absl::InvalidArgumentError("block_size must be positive");
  const Clock::time_point start = Clock::now();
  double seconds_communicating = 0.0;
  const int size = communicator_.size();
  const int64_t raw_bytes = RingAllReduceBytes(size, data.size() * sizeof(float));
  int64_t wire_bytes = raw_bytes;
  if (!options_.enabled) {
    FF_RETURN_IF_ERROR(communicator_.AllReduceSum(data));
    seconds_communicating = SecondsSince(start);
  } else if (!data.empty()) {
    FF_RETURN_IF_ERROR(CompressedAllReduce(data, seconds_communicating));
    // Each phase sends size - 1 slots: to every peer in the all-to-all, around the ring in the
    // all-gather.
    wire_bytes = 2 * (size - 1) * MakeSlotLayout(size, data.size(), options_.block_size).bytes;
  }
  stats_.calls++;
  stats_.raw_bytes += raw_bytes;
  stats_.wire_bytes += wire_bytes;
  stats_.seconds_total += SecondsSince(start);
  stats_.seconds_communicating += seconds_communicating;
  return absl::OkStatus();
}

absl::Status CompressedAllReducer::CompressedAllReduce(absl::Span<float> data,
                                                       double& seconds_communicating) {
  const int size = communicator_.size();
  const int rank = communicator_.rank();
  const int block_size = options_.block_size;
  const int64_t num_elements = data.size();
  const int64_t num_blocks = NumBlocks(num_elements, block_size);
  const SlotLayout layout = MakeSlotLayout(size, num_elements, block_size);

  local_.codes.resize(num_elements);
  local_.scales.resize(num_blocks);
  FF_RETURN_IF_ERROR(QuantizeBlocks(data, block_size, absl::MakeSpan(local_.codes),
                                    absl::MakeSpan(local_.scales)));

  // Reduce-scatter, phase 1: ship chunk d of the local codes to its owner d.
  scatter_send_.assign(size * layout.bytes, std::byte{0});
  scatter_recv_.resize(size * layout.bytes);
  for (int owner = 0; owner < size; ++owner) {
    PackChunk(local_, OwnedBy(owner, size, num_elements, block_size), layout,
              scatter_send_.data() + owner * layout.bytes);
  }
  Clock::time_point phase_start = Clock::now();
  FF_RETURN_IF_ERROR(communicator_.AllToAll(scatter_send_, absl::MakeSpan(scatter_recv_)));
  seconds_communicating += SecondsSince(phase_start);

  // Reduce-scatter, phase 2: sum every rank's contribution to the owned chunk in rank order.
  const OwnedRange owned = OwnedBy(rank, size, num_elements, block_size);
  chunk_sums_.assign(owned.end_element - owned.first_element, 0.0f);
  for (int source = 0; source < size; ++source) {
    const ChunkView chunk =
        UnpackChunk(scatter_recv_.data() + source * layout.bytes, owned, layout);
    AccumulateDequantizedBlocks(chunk.codes, chunk.scales, block_size, absl::MakeSpan(chunk_sums_));
  }

  // Requantize the reduced chunk and all-gather it. Chunk boundaries are block boundaries, so
  // quantizing the chunk alone gives the same blocks as quantizing the whole reduced vector.
  reduced_.codes.resize(num_elements);
  reduced_.scales.resize(num_blocks);
  FF_RETURN_IF_ERROR(QuantizeBlocks(
      chunk_sums_, block_size,
      absl::MakeSpan(reduced_.codes).subspan(owned.first_element, chunk_sums_.size()),
      absl::MakeSpan(reduced_.scales)
          .subspan(owned.first_block, owned.end_block - owned.first_block)));
  gather_send_.assign(layout.bytes, std::byte{0});
  gather_recv_.resize(size * layout.bytes);
  PackChunk(reduced_, owned, layout, gather_send_.data());
  phase_start = Clock::now();
  FF_RETURN_IF_ERROR(communicator_.AllGather(gather_send_, absl::MakeSpan(gather_recv_)));
  seconds_communicating += SecondsSince(phase_start);

  for (int source = 0; source < size; ++source) {
    const OwnedRange range = OwnedBy(source, size, num_elements, block_size);
    const std::byte* slot = gather_recv_.data() + source * layout.bytes;
    std::memcpy(reduced_.codes.data() + range.first_element, slot,
                range.end_element - range.first_element);
    std::memcpy(reduced_.scales.data() + range.first_block, slot + layout.scales_offset,
                (range.end_block - range.first_block) * sizeof(float));
  }
  DequantizeBlocks(reduced_.codes, reduced_.scales, block_size, data);
  return absl::OkStatus();
}

}  // namespace flatfleet::collectives
