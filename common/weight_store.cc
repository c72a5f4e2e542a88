// WeightStore: the tensors of a whole checkpoint, single-file or sharded.
#include <cstdio>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/safetensors.h"
#include "common/safetensors_index.h"
#include "common/shape_string.h"
#include "common/status_macros.h"
#include "common/strict_json.h"

namespace flatfleet {
namespace {

constexpr char kSingleFileName[] = "model.safetensors";
constexpr char kIndexFileName[] = "model.safetensors.index.json";

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
  FF_ASSIGN_OR_RETURN(SafetensorsIndex index, ReadSafetensorsIndex(index_path));
  // Each distinct shard opened once.
  std::map<std::string, SafetensorsFile*> open_shards;
  const std::filesystem::path directory = index_path.parent_path();
  for (const SafetensorsIndexShard& shard : index.shards) {
    auto file = SafetensorsFile::Open(directory / shard.file);
    if (!file.ok()) {
      return absl::Status(file.status().code(),
                          absl::StrCat(index_name, ": shard '", shard.file, "' of tensor '",
                                       shard.first_tensor, "': ", file.status().message()));
    }
    open_shards.emplace(shard.file, file->get());
    store->files_.push_back(*std::move(file));
  }
  const std::map<std::string, std::string>& shard_of_tensor = index.shard_of_tensor;
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
