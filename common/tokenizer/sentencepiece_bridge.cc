#include "common/tokenizer/sentencepiece_bridge.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <system_error>
#include <vector>

namespace flatfleet::tokenizer {
namespace {

// Where the module may be: $FLATFLEET_SENTENCEPIECE_MODULE, beside the running executable (the
// build tree and the container put it there), then ../lib/flatfleet relative to it (installs).
std::vector<std::filesystem::path> ModuleCandidates() {
  std::vector<std::filesystem::path> candidates;
  if (const char* explicit_path = std::getenv("FLATFLEET_SENTENCEPIECE_MODULE")) {
    candidates.emplace_back(explicit_path);
    return candidates;
  }
  std::error_code error;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    candidates.push_back(exe.parent_path() / kSentencePieceModuleName);
    candidates.push_back(exe.parent_path().parent_path() / "lib" / "flatfleet" /
                         kSentencePieceModuleName);
  }
  return candidates;
}

int OpenFlags() {
  int flags = RTLD_NOW | RTLD_LOCAL;
#if defined(__SANITIZE_ADDRESS__)
  // The sanitizer runtimes refuse RTLD_DEEPBIND; sanitizer builds hold no gRPC/protobuf anyway.
  return flags;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || \
    __has_feature(thread_sanitizer)
  return flags;
#endif
#endif
  flags |= RTLD_DEEPBIND;
  return flags;
}

struct OpenedModule {
  SentencePieceLoadFunction load = nullptr;
  std::string error;
};

const OpenedModule& Module() {
  static const OpenedModule* module = [] {
    auto* opened = new OpenedModule;  // lives as long as the process, like the mapping
    std::string tried;
    for (const std::filesystem::path& candidate : ModuleCandidates()) {
      void* handle = dlopen(candidate.c_str(), OpenFlags());
      if (handle == nullptr) {
        const char* reason = dlerror();
        tried += "\n  " + candidate.string() + ": " + (reason ? reason : "unknown error");
        continue;
      }
      opened->load =
          reinterpret_cast<SentencePieceLoadFunction>(dlsym(handle, kSentencePieceLoadSymbol));
      if (opened->load == nullptr) {
        tried += "\n  " + candidate.string() + ": no symbol " + kSentencePieceLoadSymbol;
        continue;
      }
      return opened;
    }
    opened->error = std::string("cannot open the sentencepiece module ") +
                    kSentencePieceModuleName +
                    " (set FLATFLEET_SENTENCEPIECE_MODULE to its path); tried:" + tried;
    return opened;
  }();
  return *module;
}

}  // namespace

std::unique_ptr<SentencePieceBridge> SentencePieceBridge::Load(const std::string& path,
                                                               std::string& error) {
  const OpenedModule& module = Module();
  if (module.load == nullptr) {
    error = module.error;
    return nullptr;
  }
  return std::unique_ptr<SentencePieceBridge>(module.load(path.c_str(), &error));
}

}  // namespace flatfleet::tokenizer
