// Rendezvous through files in a shared directory (tests, single-host groups). Gloo's FileStore
// waits 30 s by default in get() and wait(keys); this one waits at most `timeout`.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "gloo/rendezvous/file_store.h"

namespace flatfleet::collectives {

class FileStoreWithTimeout final : public gloo::rendezvous::FileStore {
 public:
  // `directory` must exist and be shared by every rank of the group.
  FileStoreWithTimeout(const std::string& directory, std::chrono::milliseconds timeout)
      : gloo::rendezvous::FileStore(directory), timeout_(timeout) {}

  void wait(const std::vector<std::string>& keys) override { FileStore::wait(keys, timeout_); }
  using gloo::rendezvous::FileStore::wait;

 private:
  const std::chrono::milliseconds timeout_;
};

}  // namespace flatfleet::collectives
