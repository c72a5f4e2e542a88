// The BPE model of a tokenizer.json: vocabulary, ranked merges and the per-word merge loop,
// with HF's byte_fallback, unk_token/fuse_unk, ignore_merges and subword prefix/suffix options.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/tokenizer/json_fields.h"

namespace flatfleet::tokenizer {

class BpeModel {
 public:
  // Parses the "model" object (type "BPE") found at `field`.
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const Json& json,
                                                            std::string_view field);

  // Appends the ids of one pre-tokenized word. Thread-safe.
  void Tokenize(std::string_view word, std::vector<int32_t>& ids) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  const std::string* IdToToken(int32_t id) const;  // nullptr if unknown
  int32_t max_id() const { return max_id_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };

  BpeModel() = default;
  std::vector<int32_t> MergeWord(std::string_view word) const;

  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  absl::flat_hash_map<int32_t, std::string> id_to_token_;
  absl::flat_hash_map<std::pair<int32_t, int32_t>, Merge> merges_;
  int32_t max_id_ = -1;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  std::vector<std::optional<int32_t>> byte_token_ids_;  // <0xXX> ids, indexed by byte

  // Words repeat a lot in real text; results are cached, and the cache is dropped when full.
  mutable std::mutex cache_mutex_;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace flatfleet::tokenizer
