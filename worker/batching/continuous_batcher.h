// Continuous batching over a paged KV cache: requests join the running batch at the next step
// and leave as soon as they finish, so the batch is refilled token by token rather than waiting
// for its slowest member.
//
// Each Step():
//  1. Decodes first: every running sequence that has sampled a token feeds it (oldest first).
//     When a decode needs a KV block and the pool is empty, the newest running sequence is
//     preempted: its cache is freed and it goes back to the front of the waiting queue to be
//     recomputed later (prompt + tokens sampled so far), keeping its sampler state, so nothing
//     is lost, duplicated or resampled.
//  2. Prefill chunks of running sequences (oldest first) fill the rest of max_step_tokens.
//  3. Admission, strictly FIFO: the head of the waiting queue is admitted only if the free
//     blocks, less those already promised to running sequences' unfinished prefills, cover its
//     whole prompt plus one decode block for every running sequence. Otherwise admission stops
//     (no overtaking, so large requests cannot starve).
//  4. One forward pass; the sequences whose chunk completed their context sample a token.
// A request always fits the pool alone (checked at Submit), so a step always makes progress.
//
// A request with n > 1 runs as n sequences ("choices"), choice i drawing from
// ChoiceSeed(seed, i); its result comes back once all n finished. The choices share the prompt's
// KV blocks: the first choice admitted prefills the prompt; once a live sibling holds the prompt
// through P = floor((len - 1) / block_size) * block_size positions, each other choice is
// admitted as PagedKvCache::Fork(sibling, P) and computes only the prompt's last len - P tokens
// (1 to block_size) itself, so it samples its first token from its own last-position logits and
// no block is ever written by two sequences. Admission of a choice, one at a time in queue
// order: the first needs its whole prompt, a forked one only its tail blocks, plus the usual one
// decode block per running sequence; a choice whose sibling is still prefilling the shared part
// waits at the head of the queue (it holds nothing, so the pool cannot deadlock). Preempting or
// retiring a choice frees only the blocks no sibling shares; a preempted choice comes back as a
// fork too when a sibling still holds the prompt. With share_prompt_blocks off (or a cache
// without Fork) every choice prefills the prompt itself.
//
// Every step is described by a StepPlan, handed to an optional hook before the forward pass so
// that rank 0 can broadcast it and tensor-parallel peers replay it (StepReplayer).
//
// Not thread-safe: the service serialises Submit / Cancel / Step.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer/tokenizer.h"
#include "worker/batching/step_plan.h"
#include "worker/model/llama_model.h"
#include "worker/model/paged_kv_cache.h"
#include "worker/sampling/sampler.h"
#include "worker/serving/inference_engine.h"

namespace flatfleet::engine {

struct ContinuousBatcherOptions {
  // Most tokens (decodes and prompt chunks together) in one forward pass.
  int64_t max_step_tokens = 512;
  int64_t max_running_sequences = 64;
  int64_t kv_block_size = 16;
  // KV pool size: kv_cache_bytes when positive, else kv_cache_blocks blocks.
  int64_t kv_cache_blocks = 1024;
  int64_t kv_cache_bytes = 0;
  // INT8 stores ~3.9x more positions in the same bytes, at a small accuracy cost
  // (docs/ACCURACY.md).
  KvCacheDtype kv_cache_dtype = KvCacheDtype::kFloat32;
  // n > 1 choices fork the prompt's KV blocks from a sibling instead of prefilling them again.
  bool share_prompt_blocks = true;
};

// The paged KV cache a batcher with `options` uses for `model`: tensor-parallel followers build
// theirs the same way, so that they mirror rank 0's block tables.
absl::StatusOr<std::unique_ptr<PagedKvCache>> CreateBatcherKvCache(
    const LlamaModel& model, const ContinuousBatcherOptions& options);

class ContinuousBatcher final : public InferenceEngine {
 public:
  // Called with each step's plan before its forward pass; an error fails the step's requests.
  using PlanHook = std::function<absl::Status(const StepPlan&)>;

  // `model` and `tokenizer` (may be null: no text, no stop strings) must outlive the batcher.
  static absl::StatusOr<std::unique_ptr<ContinuousBatcher>> Create(
      const LlamaModel& model, const tokenizer::Tokenizer* tokenizer,
      ContinuousBatcherOptions options = {});
  ~ContinuousBatcher() override;

  absl::Status Submit(EngineRequest request) override;
  void Cancel(const std::string& id) override;
  std::vector<EngineResult> Step() override;
  bool Idle() const override;
  EngineStats Stats() const override;

  void set_plan_hook(PlanHook hook) { plan_hook_ = std::move(hook); }
  // The plan of the last step that ran a forward pass.
  const StepPlan& last_plan() const { return last_plan_; }
  int64_t preemptions() const { return preemptions_; }
  // Choices admitted as forks of a sibling's prompt blocks (n > 1 sharing).
  int64_t forked_choices() const { return forked_choices_; }
  const PagedKvCache& cache() const { return *cache_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Request;
  struct ChoiceGroup;

  ContinuousBatcher(const LlamaModel& model, const tokenizer::Tokenizer* tokenizer,
                    ContinuousBatcherOptions options, std::unique_ptr<PagedKvCache> cache);

  absl::Status Validate(const EngineRequest& request) const;
  // Builds the next plan (preempting and admitting as needed); owners[i] runs plan.chunks[i].
  StepPlan Schedule(std::vector<Request*>& owners);
  bool TrySchedule(StepPlan& plan, std::vector<Request*>& owners);
  void Preempt(Request* request);
  // For a choice of an n > 1 request: the prompt positions it can fork (0: none), and the
  // running sibling holding them (null: none yet). Sets `wait` when a running sibling is still
  // prefilling those positions, so the choice should wait for it rather than prefill them.
  int64_t SharedPromptPositions(const Request& request) const;
  const Request* ForkSource(const Request& request, int64_t positions, bool& wait) const;
  // Samples the next token after a completed context; true when the request finished.
  bool SampleNext(Request& request, std::span<const float> logits);
  // Records a sampled token; true when the request finished.
  bool AcceptToken(Request& r, int32_t token);
  std::vector<EngineResult> FinishDeviceStep(StepPlan plan, std::span<const SequenceChunk> chunks,
                                             std::span<Request* const> owners, absl::Status status,
                                             std::vector<EngineResult> finished);
  // Frees the request's cache and removes it from every queue; appends its result to
  // `done` (for a choice of an n > 1 request, the merged result once its last choice retired).
  void Retire(Request* request, absl::Status status, std::vector<EngineResult>& done);

  const LlamaModel& model_;
  const tokenizer::Tokenizer* tokenizer_;
  ContinuousBatcherOptions options_;
  std::unique_ptr<PagedKvCache> cache_;
  std::vector<int32_t> default_stop_ids_;
  PlanHook plan_hook_;

  // By key (the id, or "id\x1f<choice>" for choices after the first): waiting or running.
  std::map<std::string, std::unique_ptr<Request>> live_;
  // Requests with n > 1 until their last choice retired, by id.
  std::map<std::string, std::shared_ptr<ChoiceGroup>> groups_;
  std::deque<Request*> waiting_;
  std::vector<Request*> running_;    // in admission order: the back is the newest
  std::vector<EngineResult> ready_;  // cancelled requests, returned by the next Step()
  // Sequences freed since the last plan; the next plan tells peers to free them too.
  std::vector<SequenceId> released_;
  std::vector<SequenceId> preempted_;
  StepPlan last_plan_;

  int64_t preemptions_ = 0;
  int64_t forked_choices_ = 0;
  int64_t prompt_tokens_total_ = 0;
  int64_t generated_tokens_total_ = 0;
  int64_t steps_total_ = 0;
};

}  // namespace flatfleet::engine
