#include "worker/collectives/nccl_group.h"

#include <utility>

#include "common/status_macros.h"
#include "worker/collectives/device_stream_collectives.h"
#include "worker/collectives/nccl_communicator.h"

namespace flatfleet::collectives {
namespace {

// DeviceStreamCollectives that also own their NCCL communicator (destroyed after them).
class NcclStreamCollectives final : public StreamCollectives {
 public:
  NcclStreamCollectives(std::unique_ptr<NcclCommunicator> communicator,
                        std::unique_ptr<DeviceStreamCollectives> collectives)
      : communicator_(std::move(communicator)), collectives_(std::move(collectives)) {}

  int rank() const override { return collectives_->rank(); }
  int size() const override { return collectives_->size(); }
  absl::Status AllReduceSum(void* data, int64_t count, DeviceElementType type, bool exact,
                            void* stream) override {
    return collectives_->AllReduceSum(data, count, type, exact, stream);
  }
  absl::Status GatherColumns(const float* local, int64_t rows, std::span<const int64_t> begins,
                             std::span<const int64_t> widths, float* scratch, float* full,
                             int64_t full_cols, void* stream) override {
    return collectives_->GatherColumns(local, rows, begins, widths, scratch, full, full_cols,
                                       stream);
  }
  absl::Status Synchronize() override { return collectives_->Synchronize(); }
  AllReduceStats stats() const override { return collectives_->stats(); }

 private:
  std::unique_ptr<NcclCommunicator> communicator_;
  std::unique_ptr<DeviceStreamCollectives> collectives_;
};

}  // namespace

absl::StatusOr<std::string> NewNcclUniqueId() { return CreateNcclUniqueId(); }

absl::StatusOr<std::unique_ptr<StreamCollectives>> JoinNcclGroup(const NcclGroupOptions& options) {
  FF_ASSIGN_OR_RETURN(std::unique_ptr<NcclCommunicator> communicator,
                      NcclCommunicator::Create({.rank = options.rank,
                                                .size = options.size,
                                                .unique_id = options.unique_id,
                                                .device = options.device,
                                                .timeout = options.timeout}));
  FF_ASSIGN_OR_RETURN(
      std::unique_ptr<DeviceStreamCollectives> collectives,
      DeviceStreamCollectives::Create(*communicator,
                                      {.compression_allowed = options.compression_allowed,
                                       .compression_block_size = options.compression_block_size}));
  return std::unique_ptr<StreamCollectives>(
      new NcclStreamCollectives(std::move(communicator), std::move(collectives)));
}

}  // namespace flatfleet::collectives
