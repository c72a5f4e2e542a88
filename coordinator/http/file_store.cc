#include "coordinator/http/file_store.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coordinator/random_id.h"
#include "nlohmann/json.hpp"

namespace flatfleet::coordinator::http {
namespace {

constexpr std::string_view kIdPrefix = "file-";
constexpr size_t kIdHexDigits = 24;

std::string NewFileId() { return absl::StrCat("file-", RandomHexId()); }

absl::Status WriteAtomically(const std::string& path, std::string_view content) {
  const std::string temporary = absl::StrCat(path, ".tmp");
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.flush();
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(temporary, ignored);
      return absl::UnavailableError(
          absl::StrCat("cannot write ", temporary, " (disk full or not writable)"));
    }
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error)
    return absl::UnavailableError(absl::StrCat("cannot rename ", temporary, ": ", error.message()));
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("no such file");
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return content.str();
}

}  // namespace

bool FileStore::IsUploadId(std::string_view id) {
  if (id.size() != kIdPrefix.size() + kIdHexDigits || id.substr(0, kIdPrefix.size()) != kIdPrefix) {
    return false;
  }
  return std::all_of(id.begin() + kIdPrefix.size(), id.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

absl::StatusOr<std::unique_ptr<FileStore>> FileStore::Open(std::string directory) {
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  if (error || !std::filesystem::is_directory(directory)) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot use ", directory, " for uploaded files: ", error.message()));
  }
  return std::unique_ptr<FileStore>(new FileStore(std::move(directory)));
}

std::string FileStore::PathOf(std::string_view id, std::string_view extension) const {
  return absl::StrCat(directory_, "/", std::string(id), std::string(extension));
}

absl::StatusOr<StoredFile> FileStore::Create(std::string_view filename, std::string_view purpose,
                                             std::string_view content, int64_t now_s) {
  StoredFile file{NewFileId(), static_cast<int64_t>(content.size()), now_s, std::string(filename),
                  std::string(purpose)};
  absl::MutexLock lock(&mutex_);
  // The content first: a description is only ever written for a whole file.
  if (absl::Status written = WriteAtomically(PathOf(file.id, ".jsonl"), content); !written.ok()) {
    return written;
  }
  const nlohmann::json description = {{"bytes", file.bytes},
                                      {"created_at", file.created_at_s},
                                      {"filename", file.filename},
                                      {"purpose", file.purpose}};
  if (absl::Status written = WriteAtomically(
          PathOf(file.id, ".json"),
          description.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      !written.ok()) {
    std::error_code ignored;
    std::filesystem::remove(PathOf(file.id, ".jsonl"), ignored);
    return written;
  }
  return file;
}

absl::StatusOr<StoredFile> FileStore::Get(std::string_view id) const {
  if (!IsUploadId(id)) return absl::NotFoundError(absl::StrCat("no such file: ", std::string(id)));
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<std::string> text = ReadWhole(PathOf(id, ".json"));
  if (!text.ok()) return absl::NotFoundError(absl::StrCat("no such file: ", std::string(id)));
  const nlohmann::json description = nlohmann::json::parse(*text, nullptr, false);
  if (!description.is_object()) {
    return absl::DataLossError(
        absl::StrCat("the description of file ", std::string(id), " is damaged"));
  }
  StoredFile file;
  file.id = std::string(id);
  file.bytes = description.value("bytes", int64_t{0});
  file.created_at_s = description.value("created_at", int64_t{0});
  file.filename = description.value("filename", "");
  file.purpose = description.value("purpose", "");
  return file;
}

absl::StatusOr<std::string> FileStore::Content(std::string_view id) const {
  if (!IsUploadId(id)) return absl::NotFoundError(absl::StrCat("no such file: ", std::string(id)));
  absl::MutexLock lock(&mutex_);
  if (!std::filesystem::exists(PathOf(id, ".json"))) {
    return absl::NotFoundError(absl::StrCat("no such file: ", std::string(id)));
  }
  return ReadWhole(PathOf(id, ".jsonl"));
}

absl::Status FileStore::Delete(std::string_view id) {
  if (!IsUploadId(id)) return absl::NotFoundError(absl::StrCat("no such file: ", std::string(id)));
  absl::MutexLock lock(&mutex_);
  std::error_code error;
  // The description first: without it the file no longer exists for readers.
  if (!std::filesystem::remove(PathOf(id, ".json"), error)) {
    return absl::NotFoundError(absl::StrCat("no such file: ", std::string(id)));
  }
  std::filesystem::remove(PathOf(id, ".jsonl"), error);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<StoredFile>> FileStore::List() const {
  std::vector<std::string> ids;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(directory_, error)) {
    const std::filesystem::path path = entry.path();
    if (path.extension() == ".json" && IsUploadId(path.stem().string())) {
      ids.push_back(path.stem().string());
    }
  }
  std::vector<StoredFile> files;
  for (const std::string& id : ids) {
    absl::StatusOr<StoredFile> file = Get(id);
    if (file.ok()) files.push_back(*std::move(file));
  }
  std::sort(files.begin(), files.end(), [](const StoredFile& a, const StoredFile& b) {
    return a.created_at_s != b.created_at_s ? a.created_at_s > b.created_at_s : a.id > b.id;
  });
  return files;
}

}  // namespace flatfleet::coordinator::http
