// The public BatchService over the job store and the scheduler.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "coordinator/batch_input_limits.h"
#include "coordinator/job_store.h"
#include "coordinator/server/scheduler.h"
#include "flatfleet/v1/batch.grpc.pb.h"

namespace flatfleet::coordinator {

struct BatchServiceOptions {
  BatchInputLimits input_limits;
  // Directories whose files CreateBatch may read through options.input_path; empty: none.
  std::vector<std::string> input_dirs;
  // Bytes of JSONL lines one CreateBatch may carry (uploaded or read from input_path).
  uint64_t max_upload_bytes = uint64_t{256} << 20;
  int default_max_attempts = 3;
  uint32_t default_page_size = 20;
  uint32_t max_page_size = 100;
  absl::Duration generate_timeout = absl::Minutes(5);
  // How often a following StreamResults looks for new results.
  absl::Duration follow_poll_interval = absl::Milliseconds(50);
};

class BatchServiceImpl final : public v1::BatchService::Service {
 public:
  BatchServiceImpl(JobStore* store, Scheduler* scheduler, BatchServiceOptions options);

  // Ends following StreamResults calls, so that server shutdown does not wait for them.
  void BeginShutdown() { shutting_down_ = true; }

  grpc::Status CreateBatch(grpc::ServerContext* context,
                           grpc::ServerReader<v1::CreateBatchRequest>* reader,
                           v1::CreateBatchResponse* response) override;
  grpc::Status GetBatch(grpc::ServerContext* context, const v1::GetBatchRequest* request,
                        v1::Batch* response) override;
  grpc::Status ListBatches(grpc::ServerContext* context, const v1::ListBatchesRequest* request,
                           v1::ListBatchesResponse* response) override;
  grpc::Status CancelBatch(grpc::ServerContext* context, const v1::CancelBatchRequest* request,
                           v1::Batch* response) override;
  grpc::Status StreamResults(grpc::ServerContext* context, const v1::StreamResultsRequest* request,
                             grpc::ServerWriter<v1::BatchResult>* writer) override;
  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        v1::GenerateResponse* response) override;

 private:
  // The input file named by a CreateBatch, if it lies inside one of the input directories.
  absl::StatusOr<std::string> ResolveInputPath(const std::string& path) const;

  JobStore* const store_;
  Scheduler* const scheduler_;
  const BatchServiceOptions options_;
  std::atomic<bool> shutting_down_{false};
};

// The public message for a stored job.
v1::Batch ToBatchProto(const JobRecord& job);
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace flatfleet::coordinator
