// model.safetensors.index.json, Hugging Face's index of a sharded checkpoint: which shard file
// holds each tensor. Read by the weight store (which opens the shards) and by the planner's
// memory estimate (which reads only their headers).
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace flatfleet {

struct SafetensorsIndexShard {
  std::string file;          // relative to the index's directory, inside it
  std::string first_tensor;  // the first tensor (in weight_map's order) it holds, for errors
};

struct SafetensorsIndex {
  std::map<std::string, std::string> shard_of_tensor;  // weight_map
  std::vector<SafetensorsIndexShard> shards;           // each shard once, first-seen order
};

// Parses an index strictly: a JSON object whose "weight_map" maps tensor names to shard file
// names that are relative and stay inside the directory. Errors name `source_name` and the
// tensor.
absl::StatusOr<SafetensorsIndex> ParseSafetensorsIndex(std::string_view text,
                                                       std::string_view source_name);
// ParseSafetensorsIndex of the file `index_path`.
absl::StatusOr<SafetensorsIndex> ReadSafetensorsIndex(const std::filesystem::path& index_path);

}  // namespace flatfleet
