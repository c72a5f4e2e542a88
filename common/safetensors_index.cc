#include "common/safetensors_index.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "common/read_whole_file.h"
#include "common/status_macros.h"
#include "common/strict_json.h"

namespace flatfleet {
namespace {

// Shard names come from the index file and must stay inside the checkpoint directory.
bool IsContainedRelativePath(const std::filesystem::path& shard) {
  if (shard.empty() || shard.is_absolute() || shard.has_root_name() || shard.has_root_directory()) {
    return false;
  }
  for (const auto& component : shard) {
    if (component == "..") return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<SafetensorsIndex> ReadSafetensorsIndex(const std::filesystem::path& index_path) {
  FF_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(index_path));
  return ParseSafetensorsIndex(text, index_path.string());
}

absl::StatusOr<SafetensorsIndex> ParseSafetensorsIndex(std::string_view text,
                                                       std::string_view source_name) {
  const std::string index_name(source_name);
  FF_ASSIGN_OR_RETURN(nlohmann::json index, ParseStrictJson(text, index_name));
  if (!index.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_name, ": not a JSON object"));
  }
  auto weight_map = index.find("weight_map");
  if (weight_map == index.end() || !weight_map->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_name, ": missing or non-object 'weight_map'"));
  }
  SafetensorsIndex result;
  std::set<std::string> seen;
  for (const auto& [tensor, shard_json] : weight_map->items()) {
    if (!shard_json.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_name, ": weight_map entry of tensor '", tensor, "' is not a string"));
    }
    const std::string& shard = shard_json.get_ref<const std::string&>();
    if (!IsContainedRelativePath(shard)) {
      return absl::InvalidArgumentError(absl::StrCat(index_name, ": shard '", shard,
                                                     "' of tensor '", tensor,
                                                     "' escapes the checkpoint directory"));
    }
    if (seen.insert(shard).second) result.shards.push_back({shard, tensor});
    result.shard_of_tensor.emplace(tensor, shard);
  }
  return result;
}

}  // namespace flatfleet
