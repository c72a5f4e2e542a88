// Fuzzes model.safetensors.index.json parsing: any text must parse or fail cleanly; an index that
// parses maps every tensor to a listed shard whose name stays inside the directory.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>

#include "common/safetensors_index.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto index = flatfleet::ParseSafetensorsIndex(text, "fuzz/model.safetensors.index.json");
  if (!index.ok()) return 0;
  std::set<std::string> shards;
  for (const flatfleet::SafetensorsIndexShard& shard : index->shards) {
    if (!shards.insert(shard.file).second) __builtin_trap();  // each shard once
    if (shard.file.empty() || shard.file.front() == '/') __builtin_trap();
    if (std::string_view(shard.file).find("..") != std::string_view::npos) {
      // ".." is allowed inside a name ("a..b") but never as a path component.
      for (const auto& component : std::filesystem::path(shard.file)) {
        if (component == "..") __builtin_trap();
      }
    }
    auto first = index->shard_of_tensor.find(shard.first_tensor);
    if (first == index->shard_of_tensor.end() || first->second != shard.file) __builtin_trap();
  }
  for (const auto& [tensor, shard] : index->shard_of_tensor) {
    if (!shards.contains(shard)) __builtin_trap();
  }
  return 0;
}
