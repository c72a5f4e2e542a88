// WeightStore: the tensors of a whole checkpoint, single-file or sharded.
#include <cstdio>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/safetensors.h"
#include "common/shape_string.h"
#include "common/status_macros.h"
#include "common/strict_json.h"

namespace flatfleet {
namespace {

constexpr char kSingleFileName[] = "model.safetensors";
constexpr char kIndexFileName[] = "model.safetensors.index.json";

absl::StatusOr<std::string> ReadWholeFile(const std::filesystem::path& path) {
  std::FILE* stream = std::fopen(path.c_str(), "rb");
  if (stream == nullptr) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot open"));
  std::string contents;
  char buffer[1 << 16];
  size_t read;
  while ((read = std::fread(buffer, 1, sizeof(buffer), stream)) > 0) contents.append(buffer, read);
  const bool failed = std::ferror(stream) != 0;
  std::fclose(stream);
  if (failed) return absl::DataLossError(absl::StrCat(path.string(), ": read error"));
  return contents;
}

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

absl::StatusOr<std::unique_ptr<WeightStore>> WeightStore::Open(const std::filesystem::path& path) {
  std::error_code error;
  std::unique_ptr<WeightStore> store(new WeightStore());
  store->path_ = path;
  std::filesystem::path index_path;
  std::filesystem::path single_path;
  if (std::filesystem::is_directory(path, error)) {
    if (std::filesystem::exists(path / kIndexFileName, error)) {
      index_path = path / kIndexFileName;
    } else if (std::filesystem::exists(path / kSingleFileName, error)) {
      single_path = path / kSingleFileName;
    } else {
      return absl::NotFoundError(absl::StrCat(path.string(), ": neither ", kIndexFileName, " nor ",
                                              kSingleFileName, " found"));
    }
  } else if (!std::filesystem::exists(path, error)) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": no such checkpoint"));
  } else if (path.string().ends_with(".index.json")) {
    index_path = path;
  } else {
    single_path = path;
  }

  if (!single_path.empty()) {
    FF_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(single_path));
    for (const TensorInfo& tensor : file->tensors()) store->tensors_.emplace(tensor.name, &tensor);
    store->files_.push_back(std::move(file));
    return store;
  }

  const std::string index_name = index_path.string();
  FF_ASSIGN_OR_RETURN(std::string index_text, ReadWholeFile(index_path));
  FF_ASSIGN_OR_RETURN(nlohmann::json index, ParseStrictJson(index_text, index_name));
  if (!index.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_name, ": not a JSON object"));
  }
  auto weight_map = index.find("weight_map");
  if (weight_map == index.end() || !weight_map->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_name, ": missing or non-object 'weight_map'"));
  }
  // Tensor name -> shard file name, and each distinct shard opened once.
  std::map<std::string, std::string> shard_of_tensor;
  std::map<std::string, SafetensorsFile*> open_shards;
  const std::filesystem::path directory = index_path.parent_path();
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
    shard_of_tensor.emplace(tensor, shard);
    if (open_shards.contains(shard)) continue;
    auto file = SafetensorsFile::Open(directory / shard);
    if (!file.ok()) {
      return absl::Status(file.status().code(),
                          absl::StrCat(index_name, ": shard '", shard, "' of tensor '", tensor,
                                       "': ", file.status().message()));
    }
    open_shards.emplace(shard, file->get());
    store->files_.push_back(*std::move(file));
  }
  // Every tensor of every shard must be listed in the index, for exactly that shard.
  for (const auto& file : store->files_) {
    for (const TensorInfo& tensor : file->tensors()) {
      auto listed = shard_of_tensor.find(tensor.name);
      if (listed == shard_of_tensor.end()) {
        return absl::InvalidArgumentError(absl::StrCat(index_name, ": tensor '", tensor.name,
                                                       "' of ", file->path(),
                                                       " is not listed in the index"));
      }
      if (open_shards.at(listed->second) != file.get()) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_name, ": tensor '", tensor.name, "' appears in ", file->path(),
                         " but the index assigns it to shard '", listed->second, "'"));
      }
    }
  }
  for (const auto& [tensor, shard] : shard_of_tensor) {
    const TensorInfo* info = open_shards.at(shard)->Find(tensor);
    if (info == nullptr) {
      return absl::NotFoundError(absl::StrCat(index_name, ": tensor '", tensor,
                                              "' is listed for shard '", shard,
                                              "' but absent from it"));
    }
    store->tensors_.emplace(tensor, info);
  }
  return store;
}

const TensorInfo* WeightStore::Find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : it->second;
}

absl::StatusOr<const TensorInfo*> WeightStore::Get(std::string_view name) const {
  const TensorInfo* info = Find(name);
  if (info == nullptr) {
    return absl::NotFoundError(absl::StrCat(path_.string(), ": tensor '", std::string(name),
                                            "' not found in the checkpoint"));
  }
  return info;
}

absl::StatusOr<Tensor> WeightStore::LoadF32(std::string_view name,
                                            const std::vector<int64_t>& expected_shape) const {
  FF_ASSIGN_OR_RETURN(const TensorInfo* info, Get(name));
  if (info->shape != expected_shape) {
    return absl::InvalidArgumentError(absl::StrCat(info->file, ": tensor '", info->name,
                                                   "' has shape ", FormatShape(info->shape),
                                                   ", expected ", FormatShape(expected_shape)));
  }
  return ToFloat32(*info);
}

std::vector<std::string> WeightStore::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, info] : tensors_) names.push_back(name);
  return names;
}

}  // namespace flatfleet
