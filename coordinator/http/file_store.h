// Files uploaded through the OpenAI-compatible API (POST /v1/files), kept in a directory: each
// as <id>.jsonl with its description in <id>.json, written to a temporary name and renamed so
// that a crash never leaves half a file under an id. Ids are "file-" and 24 hex digits; any
// other id is simply not found, so a request cannot name a path outside the directory.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace flatfleet::coordinator::http {

struct StoredFile {
  std::string id;
  int64_t bytes = 0;
  int64_t created_at_s = 0;
  std::string filename;
  std::string purpose;
};

class FileStore {
 public:
  // Creates `directory` if needed.
  static absl::StatusOr<std::unique_ptr<FileStore>> Open(std::string directory);

  absl::StatusOr<StoredFile> Create(std::string_view filename, std::string_view purpose,
                                    std::string_view content, int64_t now_s);
  absl::StatusOr<StoredFile> Get(std::string_view id) const;
  absl::StatusOr<std::string> Content(std::string_view id) const;
  absl::Status Delete(std::string_view id);
  // Newest first.
  absl::StatusOr<std::vector<StoredFile>> List() const;

  // True for ids this store could have made ("file-" and 24 lower-case hex digits).
  static bool IsUploadId(std::string_view id);

 private:
  explicit FileStore(std::string directory) : directory_(std::move(directory)) {}
  std::string PathOf(std::string_view id, std::string_view extension) const;

  const std::string directory_;
  mutable absl::Mutex mutex_;  // Orders deletes against reads of the same file.
};

}  // namespace flatfleet::coordinator::http
