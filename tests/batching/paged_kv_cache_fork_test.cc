// Reference-counted block sharing in PagedKvCache: Fork shares a parent's leading whole blocks,
// Append gives the child fresh ones, and a shared block returns to the pool only when its last
// sequence is removed, in whatever order the sequences go.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/quant/test_random.h"
#include "worker/model/paged_kv_cache.h"

namespace flatfleet::engine {
namespace {

constexpr int64_t kRowSize = 3;

PagedKvCacheShape SmallShape() { return {.num_layers = 1, .row_size = kRowSize, .block_size = 4}; }

std::vector<float> Rows(int64_t count, float base) {
  std::vector<float> rows(count * kRowSize);
  std::iota(rows.begin(), rows.end(), base);
  return rows;
}

std::vector<float> ReadKeys(const PagedKvCache& cache, SequenceId sequence) {
  std::vector<float> keys;
  for (const kernels::KvBlock& block : cache.Blocks(0, sequence)) {
    keys.insert(keys.end(), block.keys, block.keys + block.num_positions * kRowSize);
  }
  return keys;
}

std::vector<int32_t> Table(const PagedKvCache& cache, SequenceId sequence) {
  const auto table = cache.BlockTable(sequence);
  return {table.begin(), table.end()};
}

TEST(PagedKvCacheForkTest, ChildSharesTheParentsLeadingBlocksAndAppendsFreshOnes) {
  auto cache = *PagedKvCache::Create(SmallShape(), 8);
  const SequenceId parent = *cache->AddSequence();
  ASSERT_TRUE(cache->Append(parent, 10).ok());  // 3 blocks, the last one half full
  const std::vector<float> prompt = Rows(10, 1.0f);
  cache->Write(0, parent, 0, 10, prompt.data(), prompt.data());
  EXPECT_EQ(cache->used_blocks(), 3);

  auto child = cache->Fork(parent, 8);
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ(cache->Length(*child), 8);
  const std::vector<int32_t> parent_table = Table(*cache, parent);
  EXPECT_EQ(Table(*cache, *child),
            std::vector<int32_t>(parent_table.begin(), parent_table.begin() + 2));
  EXPECT_EQ(cache->used_blocks(), 3);  // shared blocks count once
  EXPECT_EQ(cache->BlockUsers(parent_table[0]), 2);
  EXPECT_EQ(cache->BlockUsers(parent_table[2]), 1);

  // The child's tail goes to a fresh block; the parent's positions 8.. stay untouched.
  EXPECT_EQ(cache->BlocksToAppend(*child, 1), 1);
  ASSERT_TRUE(cache->Append(*child, 3).ok());
  const std::vector<float> tail = Rows(3, 500.0f);
  cache->Write(0, *child, 8, 3, tail.data(), tail.data());
  EXPECT_EQ(cache->used_blocks(), 4);
  EXPECT_EQ(std::set<int32_t>(parent_table.begin(), parent_table.end())
                .count(Table(*cache, *child).back()),
            0u);
  EXPECT_EQ(ReadKeys(*cache, parent), prompt);
  std::vector<float> expected_child(prompt.begin(), prompt.begin() + 8 * kRowSize);
  expected_child.insert(expected_child.end(), tail.begin(), tail.end());
  EXPECT_EQ(ReadKeys(*cache, *child), expected_child);
}

TEST(PagedKvCacheForkTest, RefusesForksThatAreNotWholeBlocksOfALiveSequence) {
  auto cache = *PagedKvCache::Create(SmallShape(), 4);
  const SequenceId parent = *cache->AddSequence();
  ASSERT_TRUE(cache->Append(parent, 6).ok());
  EXPECT_EQ(cache->Fork(parent, 3).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache->Fork(parent, 8).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache->Fork(parent, -4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache->Fork(99, 4).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cache->used_blocks(), 2);
  EXPECT_EQ(cache->BlockUsers(Table(*cache, parent)[0]), 1);
  // Zero positions is an empty sequence that shares nothing.
  auto empty = cache->Fork(parent, 0);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(cache->Length(*empty), 0);
  EXPECT_TRUE(cache->BlockTable(*empty).empty());
}

// Every removal order of a parent and two forks (one of them forked from the other fork):
// blocks return to the pool exactly when their last user goes.
TEST(PagedKvCacheForkTest, RemovalInEveryOrderFreesASharedBlockOnlyWithItsLastUser) {
  std::vector<int> order = {0, 1, 2};
  do {
    SCOPED_TRACE(::testing::Message() << "order " << order[0] << order[1] << order[2]);
    auto cache = *PagedKvCache::Create(SmallShape(), 16);
    const SequenceId parent = *cache->AddSequence();
    ASSERT_TRUE(cache->Append(parent, 13).ok());    // blocks p0 p1 p2 p3
    const SequenceId a = *cache->Fork(parent, 12);  // shares p0 p1 p2
    ASSERT_TRUE(cache->Append(a, 6).ok());          // + a0 a1
    const SequenceId b = *cache->Fork(a, 16);       // shares p0 p1 p2 a0
    ASSERT_TRUE(cache->Append(b, 1).ok());          // + b0
    EXPECT_EQ(cache->used_blocks(), 4 + 2 + 1);
    const std::vector<SequenceId> ids = {parent, a, b};
    std::vector<std::vector<int32_t>> tables;
    for (SequenceId id : ids) tables.push_back(Table(*cache, id));
    std::set<SequenceId> live(ids.begin(), ids.end());
    for (int which : order) {
      cache->RemoveSequence(ids[which]);
      live.erase(ids[which]);
      // The expected count: the distinct blocks the live sequences hold.
      std::set<int32_t> held;
      for (size_t i = 0; i < ids.size(); ++i) {
        if (live.contains(ids[i])) held.insert(tables[i].begin(), tables[i].end());
      }
      EXPECT_EQ(cache->used_blocks(), static_cast<int64_t>(held.size()));
      for (const auto& table : tables) {
        for (int32_t block : table) {
          int32_t users = 0;
          for (size_t i = 0; i < ids.size(); ++i) {
            if (live.contains(ids[i])) {
              users += static_cast<int32_t>(std::count(tables[i].begin(), tables[i].end(), block));
            }
          }
          EXPECT_EQ(cache->BlockUsers(block), users) << "block " << block;
        }
      }
    }
    EXPECT_EQ(cache->free_blocks(), 16);
    // Removing twice changes nothing.
    cache->RemoveSequence(parent);
    EXPECT_EQ(cache->free_blocks(), 16);
  } while (std::next_permutation(order.begin(), order.end()));
}

TEST(PagedKvCacheForkTest, ExhaustionWithSharedBlocksLeavesEveryTableUnchanged) {
  auto cache = *PagedKvCache::Create(SmallShape(), 4);
  const SequenceId parent = *cache->AddSequence();
  ASSERT_TRUE(cache->Append(parent, 9).ok());  // 3 blocks
  const SequenceId child = *cache->Fork(parent, 8);
  ASSERT_TRUE(cache->Append(child, 2).ok());  // the last free block
  EXPECT_EQ(cache->free_blocks(), 0);
  const std::vector<int32_t> parent_table = Table(*cache, parent);
  const std::vector<int32_t> child_table = Table(*cache, child);
  // A fork takes no block, so it succeeds on a full pool; its append cannot.
  const SequenceId grandchild = *cache->Fork(child, 8);
  EXPECT_EQ(cache->Append(grandchild, 1).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(cache->Append(child, 3).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(cache->Length(grandchild), 8);
  EXPECT_EQ(cache->Length(child), 10);
  EXPECT_EQ(Table(*cache, parent), parent_table);
  EXPECT_EQ(Table(*cache, child), child_table);
  EXPECT_EQ(cache->BlockUsers(parent_table[0]), 3);
  EXPECT_EQ(cache->used_blocks(), 4);
  // Removing the parent frees only its unshared last block.
  cache->RemoveSequence(parent);
  EXPECT_EQ(cache->free_blocks(), 1);
  ASSERT_TRUE(cache->Append(grandchild, 1).ok());
  EXPECT_EQ(cache->free_blocks(), 0);
  cache->RemoveSequence(child);
  cache->RemoveSequence(grandchild);
  EXPECT_EQ(cache->free_blocks(), 4);
}

// Random forks, appends and removals against a model of the block users.
TEST(PagedKvCacheForkTest, RandomOperationsKeepCountsConsistent) {
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (FLATFLEET_TEST_SEED replays it)");
  std::mt19937_64 rng(seed);
  auto cache = *PagedKvCache::Create(SmallShape(), 12);
  std::vector<SequenceId> live;
  for (int op = 0; op < 2000; ++op) {
    const int kind = static_cast<int>(rng() % 4);
    if (kind == 0 || live.empty()) {
      live.push_back(*cache->AddSequence());
    } else if (kind == 1) {
      const SequenceId parent = live[rng() % live.size()];
      const int64_t whole = cache->Length(parent) / 4;
      live.push_back(*cache->Fork(parent, 4 * static_cast<int64_t>(rng() % (whole + 1))));
    } else if (kind == 2) {
      const SequenceId s = live[rng() % live.size()];
      const int64_t before = cache->Length(s);
      const int64_t free_before = cache->free_blocks();
      const int64_t count = static_cast<int64_t>(rng() % 9);
      const int64_t needed = cache->BlocksToAppend(s, count);
      const absl::Status status = cache->Append(s, count);
      if (needed > free_before) {
        EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
        EXPECT_EQ(cache->Length(s), before);
        EXPECT_EQ(cache->free_blocks(), free_before);
      } else {
        EXPECT_TRUE(status.ok()) << status;
        EXPECT_EQ(cache->free_blocks(), free_before - needed);
      }
    } else {
      const size_t at = rng() % live.size();
      cache->RemoveSequence(live[at]);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(at));
    }
    std::vector<int32_t> users(cache->total_blocks(), 0);
    for (SequenceId s : live) {
      for (int32_t block : cache->BlockTable(s)) ++users[block];
    }
    int64_t used = 0;
    for (int32_t block = 0; block < cache->total_blocks(); ++block) {
      ASSERT_EQ(cache->BlockUsers(block), users[block]) << "op " << op << " block " << block;
      used += users[block] > 0;
    }
    ASSERT_EQ(cache->used_blocks(), used) << "op " << op;
  }
}

}  // namespace
}  // namespace flatfleet::engine
