#include "worker/model/paged_kv_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/quant/test_random.h"
#include "worker/model/llama_model.h"

namespace flatfleet::engine {
namespace {

PagedKvCacheShape SmallShape() { return {.num_layers = 2, .row_size = 3, .block_size = 4}; }

std::vector<float> Rows(int64_t count, int64_t row_size, float base) {
  std::vector<float> rows(count * row_size);
  std::iota(rows.begin(), rows.end(), base);
  return rows;
}

// Positions [0, Length) read back through Blocks(), flattened.
std::vector<float> ReadKeys(const PagedKvCache& cache, int64_t layer, SequenceId sequence,
                            int64_t row_size) {
  std::vector<float> keys;
  for (const kernels::KvBlock& block : cache.Blocks(layer, sequence)) {
    keys.insert(keys.end(), block.keys, block.keys + block.num_positions * row_size);
  }
  return keys;
}

TEST(PagedKvCacheTest, WritesReadBackAcrossNonContiguousBlocks) {
  auto cache = *PagedKvCache::Create(SmallShape(), /*num_blocks=*/8);
  SequenceId a = *cache->AddSequence();
  SequenceId b = *cache->AddSequence();
  std::vector<float> expected_a;
  // Grow both sequences in turns so that their blocks interleave in the pool.
  for (int round = 0; round < 3; ++round) {
    for (SequenceId s : {a, b}) {
      const int64_t begin = cache->Length(s);
      ASSERT_TRUE(cache->Append(s, 5).ok());
      std::vector<float> keys = Rows(5, 3, 1000.0f * s + 100.0f * round);
      std::vector<float> values = Rows(5, 3, -1000.0f * s - 100.0f * round);
      for (int64_t layer = 0; layer < 2; ++layer) {
        cache->Write(layer, s, begin, 5, keys.data(), values.data());
      }
      if (s == a) expected_a.insert(expected_a.end(), keys.begin(), keys.end());
    }
  }
  EXPECT_EQ(cache->Length(a), 15);
  EXPECT_EQ(cache->used_blocks(), 8);
  EXPECT_EQ(ReadKeys(*cache, 1, a, 3), expected_a);
  // a's table is not one run, so Blocks() must return several blocks summing to its length.
  const auto blocks = cache->Blocks(0, a);
  EXPECT_GT(blocks.size(), 1u);
  int64_t total = 0;
  for (const auto& block : blocks) total += block.num_positions;
  EXPECT_EQ(total, 15);
}

TEST(PagedKvCacheTest, AdjacentBlocksMergeIntoOneRun) {
  auto cache = *PagedKvCache::Create(SmallShape(), 8);
  SequenceId a = *cache->AddSequence();
  ASSERT_TRUE(cache->Append(a, 10).ok());  // blocks 0, 1, 2
  const auto blocks = cache->Blocks(0, a);
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(blocks[0].num_positions, 10);
}

TEST(PagedKvCacheTest, ExhaustionFailsCleanlyAndRemovalFreesBlocks) {
  auto cache = *PagedKvCache::Create(SmallShape(), 3);
  EXPECT_EQ(cache->total_blocks(), 3);
  SequenceId a = *cache->AddSequence();
  SequenceId b = *cache->AddSequence();
  ASSERT_TRUE(cache->Append(a, 8).ok());
  EXPECT_EQ(cache->BlocksToAppend(b, 5), 2);
  absl::Status status = cache->Append(b, 5);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_EQ(cache->Length(b), 0);  // the failed append changed nothing
  EXPECT_EQ(cache->used_blocks(), 2);
  ASSERT_TRUE(cache->Append(b, 4).ok());
  EXPECT_EQ(cache->free_blocks(), 0);
  EXPECT_EQ(cache->Append(a, 1).code(), absl::StatusCode::kResourceExhausted);
  cache->RemoveSequence(a);
  EXPECT_EQ(cache->free_blocks(), 2);
  EXPECT_FALSE(cache->Contains(a));
  ASSERT_TRUE(cache->Append(b, 8).ok());  // reuses a's blocks
  EXPECT_EQ(cache->used_blocks(), 3);
  EXPECT_EQ(cache->Append(b, 1).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(cache->Append(/*unknown*/ 99, 1).code(), absl::StatusCode::kNotFound);
}

TEST(PagedKvCacheTest, SizesPoolFromBytesAndRejectsBadShapes) {
  const int64_t per_block = PagedKvCache::BytesPerBlock(SmallShape());
  EXPECT_EQ(per_block, 2 * 2 * 4 * 3 * 4);
  auto cache = PagedKvCache::CreateWithBytes(SmallShape(), 5 * per_block + 7);
  ASSERT_TRUE(cache.ok()) << cache.status();
  EXPECT_EQ((*cache)->total_blocks(), 5);
  EXPECT_FALSE(PagedKvCache::CreateWithBytes(SmallShape(), per_block - 1).ok());
  EXPECT_FALSE(PagedKvCache::Create(SmallShape(), 0).ok());
  EXPECT_FALSE(PagedKvCache::Create({.num_layers = 2, .row_size = 3, .block_size = 0}, 4).ok());
}

// Runs the same interleaved workload through a model with both caches: prompts prefilled in
// chunks of different sizes, then decoding in turns, so each paged sequence is scattered.
void ExpectSameLogitsAsContiguous(const std::string& fixture) {
  const std::filesystem::path dir =
      std::filesystem::path(FLATFLEET_SHARED_DIR) / "fixtures" / fixture;
  auto model = LoadLlamaModel(dir, kernels::cpu::DefaultCpuBackend());
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelConfig& config = (*model)->config();
  // One block of 256 positions per sequence: each sequence is physically contiguous.
  auto contiguous_cache = *PagedKvCache::Create({.num_layers = config.num_hidden_layers,
                                                 .row_size = (*model)->kv_row_size(),
                                                 .block_size = 256},
                                                3);
  PagedKvCache& contiguous = *contiguous_cache;
  auto paged = *PagedKvCache::Create({.num_layers = config.num_hidden_layers,
                                      .row_size = (*model)->kv_row_size(),
                                      .block_size = 4},
                                     64);
  std::mt19937 rng(5);
  std::vector<std::vector<int32_t>> prompts = {std::vector<int32_t>(13), std::vector<int32_t>(7),
                                               std::vector<int32_t>(10)};
  for (auto& prompt : prompts) {
    for (int32_t& token : prompt) token = static_cast<int32_t>(rng() % config.vocab_size);
  }
  std::vector<SequenceId> c_ids, p_ids;
  for (size_t i = 0; i < prompts.size(); ++i) {
    c_ids.push_back(*contiguous.AddSequence());
    p_ids.push_back(*paged->AddSequence());
  }
  auto run = [&](const std::vector<std::pair<size_t, std::span<const int32_t>>>& work,
                 bool all_logits) {
    std::vector<SequenceChunk> c_chunks, p_chunks;
    for (const auto& [seq, tokens] : work) {
      c_chunks.push_back({c_ids[seq], tokens, all_logits});
      p_chunks.push_back({p_ids[seq], tokens, all_logits});
    }
    auto c_logits = (*model)->Forward(c_chunks, contiguous);
    auto p_logits = (*model)->Forward(p_chunks, *paged);
    ASSERT_TRUE(c_logits.ok()) << c_logits.status();
    ASSERT_TRUE(p_logits.ok()) << p_logits.status();
    ASSERT_EQ(c_logits->size(), p_logits->size());
    for (int64_t i = 0; i < c_logits->size(); ++i) {
      ASSERT_EQ(c_logits->data()[i], p_logits->data()[i]) << fixture << " element " << i;
    }
  };
  // Prefill in chunks of 3 tokens per sequence per step, all sequences in each step.
  for (size_t begin = 0; begin < 13; begin += 3) {
    std::vector<std::pair<size_t, std::span<const int32_t>>> work;
    for (size_t s = 0; s < prompts.size(); ++s) {
      if (begin >= prompts[s].size()) continue;
      const size_t take = std::min<size_t>(3, prompts[s].size() - begin);
      work.push_back({s, std::span<const int32_t>(prompts[s]).subspan(begin, take)});
    }
    run(work, /*all_logits=*/true);
  }
  // Decode a few tokens per sequence, alternating the batch composition.
  std::vector<int32_t> next = {5, 17, 33};
  for (int step = 0; step < 6; ++step) {
    std::vector<std::pair<size_t, std::span<const int32_t>>> work;
    for (size_t s = 0; s < prompts.size(); ++s) {
      if ((step + s) % 2 == 0) work.push_back({s, std::span<const int32_t>(&next[s], 1)});
    }
    run(work, false);
  }
  std::vector<size_t> scattered;
  for (SequenceId id : p_ids) scattered.push_back(paged->Blocks(0, id).size());
  EXPECT_GT(*std::max_element(scattered.begin(), scattered.end()), 1u);
}

TEST(PagedKvCacheTest, Int8StoresCodesAndScalesPerHead) {
  const PagedKvCacheShape shape{
      .num_layers = 2, .row_size = 8, .block_size = 4, .dtype = KvCacheDtype::kInt8, .head_dim = 4};
  EXPECT_EQ(PagedKvCache::BytesPerBlock(shape), 2 * 2 * 4 * (8 + 2 * 2));
  auto cache = *PagedKvCache::Create(shape, 6);
  SequenceId s = *cache->AddSequence();
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (FLATFLEET_TEST_SEED replays it)");
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> keys(10 * 8), values(10 * 8);
  for (float& v : keys) v = normal(rng);
  for (float& v : values) v = normal(rng);
  ASSERT_TRUE(cache->Append(s, 10).ok());
  cache->Write(1, s, 0, 6, keys.data(), values.data());
  cache->Write(1, s, 6, 4, keys.data() + 6 * 8, values.data() + 6 * 8);
  int64_t position = 0;
  for (const kernels::KvBlock& block : cache->Blocks(1, s)) {
    ASSERT_EQ(block.keys, nullptr);
    ASSERT_NE(block.key_codes, nullptr);
    for (int64_t j = 0; j < block.num_positions; ++j, ++position) {
      for (int64_t e = 0; e < 8; ++e) {
        const float key_scale = HalfToFloat(block.key_scales[j * 2 + e / 4]);
        const float value_scale = HalfToFloat(block.value_scales[j * 2 + e / 4]);
        EXPECT_NEAR(key_scale * block.key_codes[j * 8 + e], keys[position * 8 + e],
                    0.51f * key_scale + 1e-6f);
        EXPECT_NEAR(value_scale * block.value_codes[j * 8 + e], values[position * 8 + e],
                    0.51f * value_scale + 1e-6f);
      }
    }
  }
  EXPECT_EQ(position, 10);
  EXPECT_FALSE(PagedKvCache::Create({.num_layers = 1,
                                     .row_size = 6,
                                     .block_size = 4,
                                     .dtype = KvCacheDtype::kInt8,
                                     .head_dim = 4},
                                    2)
                   .ok());
}

TEST(PagedKvCacheTest, LlamaTinyLogitsEqualContiguousCache) {
  ExpectSameLogitsAsContiguous("llama-tiny");
}

TEST(PagedKvCacheTest, MixtralTinyLogitsEqualContiguousCache) {
  ExpectSameLogitsAsContiguous("mixtral-tiny");
}

}  // namespace
}  // namespace flatfleet::engine
