#include "quant/sharded_tensor_writer.h"

#include <unistd.h>

#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/shape_string.h"
#include "common/status_macros.h"

namespace flatfleet::quant {
namespace fs = std::filesystem;

ShardedTensorWriter::ShardedTensorWriter(fs::path dir, int64_t shard_bytes,
                                         std::map<std::string, std::string> metadata)
    : dir_(std::move(dir)), shard_bytes_(shard_bytes), metadata_(std::move(metadata)) {}

ShardedTensorWriter::~ShardedTensorWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

std::string ShardedTensorWriter::TemporaryShardName(int64_t index) {
  return absl::StrFormat("shard-%05d.safetensors.part", index + 1);
}

absl::Status ShardedTensorWriter::OpenShard() {
  open_name_ = TemporaryShardName(static_cast<int64_t>(closed_.size()));
  const fs::path path = dir_ / open_name_;
  file_ = std::fopen(path.c_str(), "wb");
  if (file_ == nullptr)
    return absl::PermissionDeniedError(absl::StrCat("cannot create ", path.string()));
  header_ = nlohmann::json::object();
  if (!metadata_.empty()) header_["__metadata__"] = metadata_;
  header_estimate_ = static_cast<int64_t>(header_.dump().size());
  data_bytes_ = 0;
  // Header length and the reserved header region; both are rewritten at close.
  const std::vector<char> reserve(8 + kHeaderReserve, ' ');
  if (std::fwrite(reserve.data(), 1, reserve.size(), file_) != reserve.size()) {
    return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  }
  return absl::OkStatus();
}

absl::Status ShardedTensorWriter::Add(std::string_view name, DType dtype,
                                      const std::vector<int64_t>& shape,
                                      std::span<const std::byte> bytes) {
  int64_t count = 1;
  for (int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(count, dim, &count)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", std::string(name), "' has invalid shape ", FormatShape(shape)));
    }
  }
  if (static_cast<uint64_t>(bytes.size()) != static_cast<uint64_t>(count) * DTypeSize(dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", std::string(name), "' has ",
                                                   bytes.size(), " bytes for shape ",
                                                   FormatShape(shape)));
  }
  if (name.empty() || name == "__metadata__" || weight_map_.count(std::string(name)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor name '", std::string(name), "' is empty, reserved or repeated"));
  }
  nlohmann::json entry = {{"dtype", DTypeName(dtype)},
                          {"shape", shape},
                          {"data_offsets", {data_bytes_, data_bytes_ + bytes.size()}}};
  const int64_t entry_size = static_cast<int64_t>(entry.dump().size() + name.size() + 8);
  if (file_ != nullptr &&
      (data_bytes_ > 0 && (static_cast<int64_t>(data_bytes_ + bytes.size()) > shard_bytes_ ||
                           header_estimate_ + entry_size > kHeaderReserve))) {
    FF_RETURN_IF_ERROR(CloseShard());
  }
  if (file_ == nullptr) {
    FF_RETURN_IF_ERROR(OpenShard());
    entry["data_offsets"] = {0, bytes.size()};
  }
  if (header_estimate_ + entry_size > kHeaderReserve) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", std::string(name), "': header entry too large"));
  }
  header_[std::string(name)] = std::move(entry);
  header_estimate_ += entry_size;
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) {
    return absl::InternalError(absl::StrCat("cannot write tensor '", std::string(name), "' to ",
                                            (dir_ / open_name_).string()));
  }
  data_bytes_ += bytes.size();
  total_bytes_ += static_cast<int64_t>(bytes.size());
  weight_map_[std::string(name)] = open_name_;
  return absl::OkStatus();
}

absl::Status ShardedTensorWriter::CloseShard() {
  if (file_ == nullptr) return absl::OkStatus();
  const std::string path = (dir_ / open_name_).string();
  std::string text;
  try {
    text = header_.dump();
  } catch (const std::exception& e) {  // a name that is not valid UTF-8
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot encode header: ", e.what()));
  }
  if (static_cast<int64_t>(text.size()) > kHeaderReserve) {
    return absl::InternalError(absl::StrCat(path, ": header outgrew its reserve"));
  }
  text.append(kHeaderReserve - text.size(), ' ');
  const uint64_t length = kHeaderReserve;
  bool ok = std::fseek(file_, 0, SEEK_SET) == 0 &&
            std::fwrite(&length, sizeof(length), 1, file_) == 1 &&
            std::fwrite(text.data(), 1, text.size(), file_) == text.size() &&
            std::fflush(file_) == 0 && fsync(fileno(file_)) == 0;
  ok = std::fclose(file_) == 0 && ok;
  file_ = nullptr;
  if (!ok) return absl::InternalError(absl::StrCat("cannot finish ", path));
  closed_.push_back(open_name_);
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> ShardedTensorWriter::Sync() {
  nlohmann::json state = {{"closed", closed_},
                          {"weight_map", weight_map_},
                          {"total_bytes", total_bytes_},
                          {"open", nullptr}};
  if (file_ != nullptr) {
    if (std::fflush(file_) != 0 || fsync(fileno(file_)) != 0) {
      return absl::InternalError(absl::StrCat("cannot flush ", (dir_ / open_name_).string()));
    }
    state["open"] = {{"name", open_name_},
                     {"data_bytes", data_bytes_},
                     {"header", header_},
                     {"header_estimate", header_estimate_}};
  }
  return state;
}

absl::Status ShardedTensorWriter::Restore(const nlohmann::json& state) {
  if (file_ != nullptr) return absl::FailedPreconditionError("Restore on a writer in use");
  try {
    closed_ = state.at("closed").get<std::vector<std::string>>();
    weight_map_ = state.at("weight_map").get<std::map<std::string, std::string>>();
    total_bytes_ = state.at("total_bytes").get<int64_t>();
    std::error_code error;
    for (const std::string& shard : closed_) {
      if (!fs::is_regular_file(dir_ / shard, error)) {
        return absl::NotFoundError(absl::StrCat("resume: shard ", (dir_ / shard).string(),
                                                " of the saved state is missing"));
      }
    }
    const nlohmann::json& open = state.at("open");
    int64_t next = static_cast<int64_t>(closed_.size());
    if (!open.is_null()) {
      open_name_ = open.at("name").get<std::string>();
      data_bytes_ = open.at("data_bytes").get<uint64_t>();
      header_ = open.at("header");
      header_estimate_ = open.at("header_estimate").get<int64_t>();
      const fs::path path = dir_ / open_name_;
      fs::resize_file(path, 8 + kHeaderReserve + data_bytes_, error);
      if (error) {
        return absl::InternalError(
            absl::StrFormat("resume: cannot cut %s back: %s", path.string(), error.message()));
      }
      file_ = std::fopen(path.c_str(), "r+b");
      if (file_ == nullptr || std::fseek(file_, 0, SEEK_END) != 0) {
        return absl::InternalError(absl::StrCat("resume: cannot reopen ", path.string()));
      }
      ++next;
    }
    // Shards a crashed run started after the state was saved.
    for (;; ++next) {
      const fs::path stale = dir_ / TemporaryShardName(next);
      if (!fs::exists(stale, error)) break;
      fs::remove(stale, error);
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("resume: bad writer state: ", e.what()));
  }
  return absl::OkStatus();
}

absl::StatusOr<WrittenShards> ShardedTensorWriter::Finish() {
  FF_RETURN_IF_ERROR(CloseShard());
  WrittenShards written;
  written.total_bytes = total_bytes_;
  std::map<std::string, std::string> renamed;
  const int64_t total = static_cast<int64_t>(closed_.size());
  for (int64_t i = 0; i < total; ++i) {
    const std::string final_name = absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, total);
    std::error_code error;
    fs::rename(dir_ / closed_[i], dir_ / final_name, error);
    if (error) {
      return absl::InternalError(
          absl::StrFormat("cannot rename %s: %s", (dir_ / closed_[i]).string(), error.message()));
    }
    renamed[closed_[i]] = final_name;
    written.files.push_back(final_name);
  }
  for (const auto& [tensor, shard] : weight_map_) written.weight_map[tensor] = renamed[shard];
  return written;
}

}  // namespace flatfleet::quant
