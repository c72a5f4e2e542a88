// Streams tensors into safetensors shards of a bounded size, so a checkpoint of any size is
// written with one tensor in memory at a time. Each shard is written to `dir` under a temporary
// name; Finish() names them `model-00001-of-000NN.safetensors` (Hugging Face's convention) and
// returns them with the weight map of `model.safetensors.index.json`.
//
// A shard's data is written as tensors arrive, behind a header region reserved up front
// (kHeaderReserve bytes, filled with the JSON header and space padding at the end, which the
// format allows); a shard is closed when its data reaches shard_bytes or its header would
// outgrow the reserve. A tensor larger than shard_bytes gets a shard of its own.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "common/safetensors.h"
#include "nlohmann/json.hpp"

namespace flatfleet::quant {

struct WrittenShards {
  std::vector<std::string> files;                 // in order, relative to the directory
  std::map<std::string, std::string> weight_map;  // tensor -> file
  int64_t total_bytes = 0;                        // tensor data bytes
};

class ShardedTensorWriter {
 public:
  static constexpr int64_t kHeaderReserve = 1 << 20;

  // `metadata` goes into every shard's "__metadata__".
  ShardedTensorWriter(std::filesystem::path dir, int64_t shard_bytes,
                      std::map<std::string, std::string> metadata = {});
  ~ShardedTensorWriter();
  ShardedTensorWriter(const ShardedTensorWriter&) = delete;
  ShardedTensorWriter& operator=(const ShardedTensorWriter&) = delete;

  // Appends one tensor (its bytes are written before Add returns). Errors name the tensor.
  absl::Status Add(std::string_view name, DType dtype, const std::vector<int64_t>& shape,
                   std::span<const std::byte> bytes);
  absl::Status Add(const TensorToWrite& tensor) {
    return Add(tensor.name, tensor.dtype, tensor.shape, tensor.bytes);
  }
  // Closes the open shard (the next Add starts a new one): a resumable run cuts shards at layer
  // ends.
  absl::Status CloseShard();
  // Shards closed so far, by temporary name, in order.
  const std::vector<std::string>& closed_shards() const { return closed_; }
  // Everything written so far made durable (the open shard flushed and fsynced), and what a
  // later run needs to continue from exactly here (Restore).
  absl::StatusOr<nlohmann::json> Sync();
  // Continues from a Sync() state in the same directory: the open shard is reopened and cut
  // back to its recorded length, shards after it (written past the state) are removed.
  absl::Status Restore(const nlohmann::json& state);
  // Closes the open shard and renames every shard to its final name.
  absl::StatusOr<WrittenShards> Finish();

  // The temporary name of shard `index` (from 0).
  static std::string TemporaryShardName(int64_t index);

 private:
  absl::Status OpenShard();

  std::filesystem::path dir_;
  int64_t shard_bytes_;
  std::map<std::string, std::string> metadata_;
  std::FILE* file_ = nullptr;
  std::string open_name_;
  nlohmann::json header_;
  int64_t header_estimate_ = 0;
  uint64_t data_bytes_ = 0;  // in the open shard
  std::vector<std::string> closed_;
  std::map<std::string, std::string> weight_map_;  // tensor -> temporary shard name
  int64_t total_bytes_ = 0;
};

}  // namespace flatfleet::quant
