#include "worker/batching/continuous_batcher.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "worker/batching/device_penalties.h"
#include "worker/sampling/stop_conditions.h"

namespace flatfleet::engine {

namespace {

// Separates a request's id from its choice index in the live map's keys.
constexpr char kChoiceSeparator = '\x1f';

}  // namespace

struct ContinuousBatcher::ChoiceGroup {
  std::string id;
  std::vector<std::string> keys;                     // by choice index
  std::vector<std::optional<EngineResult>> results;  // by choice index, as they retire
  int64_t pending = 0;
};

struct ContinuousBatcher::Request {
  explicit Request(EngineRequest r) : request(std::move(r)), context(request.prompt) {}

  // Has sampled a token and has nothing else to recompute: feeds that token next.
  bool decoding() const {
    return result.completion_tokens > 0 && static_cast<int64_t>(context.size()) - computed == 1;
  }
  int64_t pending() const { return static_cast<int64_t>(context.size()) - computed; }

  EngineRequest request;               // params.seed is this choice's seed
  std::string key;                     // in live_
  std::shared_ptr<ChoiceGroup> group;  // n > 1 only
  int32_t choice = 0;
  std::vector<int32_t> stop_ids;
  Sampler sampler{SamplingParams{}};
  // The device sampler's view of the penalties and min_tokens mask (GPU engine only; made at
  // the request's first device step).
  std::optional<DevicePenaltyTokens> device_penalties;
  // The prompt followed by every sampled token; the last sampled one is fed at the next decode.
  std::vector<int32_t> context;
  int64_t computed = 0;  // leading context tokens held in the cache
  std::optional<SequenceId> sequence;
  GenerationResult result;
  // Set on the first token of a request with stop strings (and a tokenizer).
  std::optional<IncrementalStopMatcher> stop_matcher;
  Clock::time_point submitted;
  std::optional<Clock::time_point> admitted;  // first admission (not a re-admission)
  double time_to_first_token_seconds = 0;
};

absl::StatusOr<std::unique_ptr<PagedKvCache>> CreateBatcherKvCache(
    const LlamaModel& model, const ContinuousBatcherOptions& options) {
  kernels::Backend& backend = model.backend();
  KvCacheDtype dtype = options.kv_cache_dtype;
  if (backend.memory() == runtime::MemoryKind::kDevice && dtype == KvCacheDtype::kFloat32) {
    // A GPU stores bf16 (or INT8 when asked); float32 is the CPU reference's format.
    dtype = backend.default_kv_dtype() == kernels::KvDtype::kInt8 ? KvCacheDtype::kInt8
                                                                  : KvCacheDtype::kBFloat16;
  }
  const PagedKvCacheShape shape{.num_layers = model.config().num_hidden_layers,
                                .row_size = model.kv_row_size(),
                                .block_size = options.kv_block_size,
                                .dtype = dtype,
                                .head_dim = model.config().head_dim};
  if (options.kv_cache_bytes > 0) {
    return PagedKvCache::CreateWithBytes(backend, shape, options.kv_cache_bytes);
  }
  // A GPU backend sizes the pool from the device memory the weights and workspace leave
  // (--gpu-memory-fraction), unless a block count was asked for explicitly.
  if (options.kv_cache_blocks <= 0 && backend.kv_pool_budget_bytes() > 0) {
    return PagedKvCache::CreateWithBytes(backend, shape, backend.kv_pool_budget_bytes());
  }
  return PagedKvCache::Create(backend, shape, options.kv_cache_blocks);
}

absl::StatusOr<std::unique_ptr<ContinuousBatcher>> ContinuousBatcher::Create(
    const LlamaModel& model, const tokenizer::Tokenizer* tokenizer,
    ContinuousBatcherOptions options) {
  if (options.max_step_tokens <= 0 || options.max_running_sequences <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "continuous batcher: max_step_tokens (%d) and max_running_sequences (%d) must be "
        "positive",
        options.max_step_tokens, options.max_running_sequences));
  }
  // The workspace first: the KV pool then takes what device memory is left.
  absl::Status reserved =
      model.ReserveWorkspace(options.max_step_tokens, options.max_running_sequences);
  if (!reserved.ok()) return reserved;
  absl::StatusOr<std::unique_ptr<PagedKvCache>> cache = CreateBatcherKvCache(model, options);
  if (!cache.ok()) return cache.status();
  return std::unique_ptr<ContinuousBatcher>(
      new ContinuousBatcher(model, tokenizer, options, *std::move(cache)));
}

ContinuousBatcher::ContinuousBatcher(const LlamaModel& model, const tokenizer::Tokenizer* tokenizer,
                                     ContinuousBatcherOptions options,
                                     std::unique_ptr<PagedKvCache> cache)
    : model_(model), tokenizer_(tokenizer), options_(options), cache_(std::move(cache)) {
  // The same default stop ids as Generator: the model's and the tokenizer's end-of-sequence ids.
  for (int64_t id : model.config().eos_token_ids) {
    default_stop_ids_.push_back(static_cast<int32_t>(id));
  }
  if (tokenizer_ != nullptr) {
    for (int32_t id : tokenizer_->eos_ids()) {
      if (std::find(default_stop_ids_.begin(), default_stop_ids_.end(), id) ==
          default_stop_ids_.end()) {
        default_stop_ids_.push_back(id);
      }
    }
  }
}

ContinuousBatcher::~ContinuousBatcher() = default;

absl::Status ContinuousBatcher::Validate(const EngineRequest& request) const {
  const std::string& id = request.id;
  const ModelConfig& config = model_.config();
  const SamplingParams& params = request.params;
  if (id.empty()) return absl::InvalidArgumentError("request with an empty id");
  if (id.find(kChoiceSeparator) != std::string::npos) {
    return absl::InvalidArgumentError("request id with a \\x1f character");
  }
  if (live_.contains(id) || groups_.contains(id)) {
    return absl::AlreadyExistsError(absl::StrFormat("request '%s' is already live", id));
  }
  if (request.prompt.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat("request '%s': empty prompt", id));
  }
  for (size_t i = 0; i < request.prompt.size(); ++i) {
    const int32_t token = request.prompt[i];
    if (token < 0 || token >= config.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrFormat("request '%s': prompt token %d (at %d) is outside the vocabulary [0, %d)",
                          id, token, i, config.vocab_size));
    }
  }
  if (params.max_tokens <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "request '%s': max_tokens must be positive, got %d", id, params.max_tokens));
  }
  if (params.temperature < 0.0f || params.top_k < 0 || !(params.top_p > 0.0f) ||
      params.top_p > 1.0f) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "request '%s': temperature %g must be >= 0, top_k %d >= 0 and top_p %g in (0, 1]", id,
        params.temperature, params.top_k, params.top_p));
  }
  if (params.n < 1 || params.n > kMaxChoices) {
    return absl::InvalidArgumentError(
        absl::StrFormat("request '%s': n must be in [1, %d], got %d", id, kMaxChoices, params.n));
  }
  if (!(params.repetition_penalty > 0.0f) || !std::isfinite(params.repetition_penalty) ||
      !std::isfinite(params.frequency_penalty) || !std::isfinite(params.presence_penalty)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "request '%s': repetition_penalty %g must be positive and finite, frequency_penalty %g "
        "and presence_penalty %g finite",
        id, params.repetition_penalty, params.frequency_penalty, params.presence_penalty));
  }
  if (params.min_tokens < 0 || params.min_tokens > params.max_tokens) {
    return absl::InvalidArgumentError(
        absl::StrFormat("request '%s': min_tokens %d must be in [0, max_tokens %d]", id,
                        params.min_tokens, params.max_tokens));
  }
  if (params.logprobs > kMaxTopLogprobs) {
    return absl::InvalidArgumentError(absl::StrFormat("request '%s': logprobs %d exceeds %d", id,
                                                      params.logprobs, kMaxTopLogprobs));
  }
  for (int32_t token : params.stop_token_ids) {
    if (token < 0 || token >= config.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrFormat("request '%s': stop token id %d is outside the vocabulary [0, %d)", id,
                          token, config.vocab_size));
    }
  }
  const int64_t prompt = static_cast<int64_t>(request.prompt.size());
  if (prompt + params.max_tokens > config.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "request '%s': prompt of %d tokens + max_tokens %d exceeds the model's %d positions", id,
        prompt, params.max_tokens, config.max_position_embeddings));
  }
  // The last sampled token is never fed back, so the cache holds at most prompt + max - 1.
  const int64_t positions = prompt + params.max_tokens - 1;
  if (cache_->BlocksFor(positions) > cache_->total_blocks()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("request '%s': %d positions need %d KV blocks, the whole pool has %d", id,
                        positions, cache_->BlocksFor(positions), cache_->total_blocks()));
  }
  return absl::OkStatus();
}

absl::Status ContinuousBatcher::Submit(EngineRequest request) {
  if (absl::Status status = Validate(request); !status.ok()) return status;
  const int32_t n = request.params.n;
  std::shared_ptr<ChoiceGroup> group;
  if (n > 1) {
    group = std::make_shared<ChoiceGroup>();
    group->id = request.id;
    group->results.resize(n);
    group->pending = n;
    groups_.emplace(request.id, group);
  }
  const Clock::time_point now = Clock::now();
  for (int32_t choice = 0; choice < n; ++choice) {
    auto owned = std::make_unique<Request>(request);
    Request* r = owned.get();
    r->request.params.n = 1;
    r->request.params.seed = ChoiceSeed(request.params.seed, choice);
    // Streamed text follows the first choice only (one text stream per request).
    if (choice > 0) r->request.on_text_token = nullptr;
    r->choice = choice;
    r->group = group;
    r->key = choice == 0 ? request.id
                         : absl::StrCat(request.id, std::string(1, kChoiceSeparator), choice);
    if (group) group->keys.push_back(r->key);
    r->submitted = now;
    r->stop_ids = StopIds(r->request.params, default_stop_ids_);
    r->sampler = Sampler(r->request.params, r->request.prompt, r->stop_ids);
    r->result.prompt_tokens = static_cast<int64_t>(r->request.prompt.size());
    waiting_.push_back(r);
    live_.emplace(r->key, std::move(owned));
  }
  return absl::OkStatus();
}

void ContinuousBatcher::Cancel(const std::string& id) {
  const absl::Status cancelled =
      absl::CancelledError(absl::StrFormat("request '%s' was cancelled", id));
  if (auto group = groups_.find(id); group != groups_.end()) {
    // A copy: the last Retire erases the group.
    const std::vector<std::string> keys = group->second->keys;
    for (const std::string& key : keys) {
      if (auto it = live_.find(key); it != live_.end()) Retire(it->second.get(), cancelled, ready_);
    }
    return;
  }
  auto it = live_.find(id);
  if (it == live_.end()) return;
  Retire(it->second.get(), cancelled, ready_);
}

bool ContinuousBatcher::Idle() const {
  return waiting_.empty() && running_.empty() && ready_.empty();
}

EngineStats ContinuousBatcher::Stats() const {
  EngineStats stats;
  stats.waiting_requests = static_cast<int64_t>(waiting_.size());
  stats.running_requests = static_cast<int64_t>(running_.size());
  stats.kv_cache_used_blocks = cache_->used_blocks();
  stats.kv_cache_total_blocks = cache_->total_blocks();
  stats.prompt_tokens_total = prompt_tokens_total_;
  stats.generated_tokens_total = generated_tokens_total_;
  stats.steps_total = steps_total_;
  return stats;
}

void ContinuousBatcher::Retire(Request* request, absl::Status status,
                               std::vector<EngineResult>& done) {
  if (request->sequence.has_value()) {
    cache_->RemoveSequence(*request->sequence);
    released_.push_back(*request->sequence);
  }
  std::erase(running_, request);
  std::erase(waiting_, request);
  EngineResult out;
  out.id = request->request.id;
  out.status = std::move(status);
  out.result = std::move(request->result);
  out.time_to_first_token_seconds = request->time_to_first_token_seconds;
  out.total_seconds = std::chrono::duration<double>(Clock::now() - request->submitted).count();
  if (request->admitted) {
    out.queue_seconds =
        std::chrono::duration<double>(*request->admitted - request->submitted).count();
    if (request->result.completion_tokens > 0) {
      out.prefill_seconds = out.time_to_first_token_seconds - out.queue_seconds;
      out.decode_seconds = out.total_seconds - out.time_to_first_token_seconds;
    }
  } else {
    out.queue_seconds = out.total_seconds;  // never admitted (cancelled while waiting)
  }
  std::shared_ptr<ChoiceGroup> group = request->group;
  const int32_t choice = request->choice;
  live_.erase(request->key);  // destroys *request
  if (group == nullptr) {
    done.push_back(std::move(out));
    return;
  }
  group->results[choice] = std::move(out);
  if (--group->pending > 0) return;
  // The last choice: one result for the request, failed by its first failed choice.
  EngineResult merged = *std::move(group->results[0]);
  merged.id = group->id;
  for (size_t i = 1; i < group->results.size(); ++i) {
    EngineResult& other = *group->results[i];
    if (merged.status.ok() && !other.status.ok()) merged.status = other.status;
    merged.time_to_first_token_seconds =
        std::min(merged.time_to_first_token_seconds, other.time_to_first_token_seconds);
    merged.total_seconds = std::max(merged.total_seconds, other.total_seconds);
    merged.other_choices.push_back(std::move(other.result));
  }
  groups_.erase(group->id);
  done.push_back(std::move(merged));
}

void ContinuousBatcher::Preempt(Request* request) {
  cache_->RemoveSequence(*request->sequence);
  released_.push_back(*request->sequence);
  preempted_.push_back(*request->sequence);
  request->sequence.reset();
  request->computed = 0;
  std::erase(running_, request);
  waiting_.push_front(request);  // first to come back, ahead of requests submitted after it
  ++preemptions_;
}

int64_t ContinuousBatcher::SharedPromptPositions(const Request& request) const {
  if (request.group == nullptr || !options_.share_prompt_blocks) return 0;
  const int64_t block = cache_->block_size();
  // Whole blocks only, and at least one prompt token left for the choice's own logits.
  return (static_cast<int64_t>(request.request.prompt.size()) - 1) / block * block;
}

const ContinuousBatcher::Request* ContinuousBatcher::ForkSource(const Request& request,
                                                                int64_t positions,
                                                                bool& wait) const {
  wait = false;
  for (const std::string& key : request.group->keys) {
    auto it = live_.find(key);
    if (it == live_.end() || it->second.get() == &request) continue;
    const Request& sibling = *it->second;
    if (!sibling.sequence.has_value()) continue;  // waiting
    if (sibling.computed >= positions) return &sibling;
    wait = true;
  }
  return nullptr;
}

bool ContinuousBatcher::TrySchedule(StepPlan& plan, std::vector<Request*>& owners) {
  int64_t budget = options_.max_step_tokens;
  int64_t planned_blocks = 0;  // taken from the pool by this plan's chunks
  std::map<const Request*, int64_t> planned_tokens;
  auto free_blocks = [&] { return cache_->free_blocks() - planned_blocks; };
  auto add_chunk = [&](Request* r, int64_t take, bool new_sequence, SequenceId fork_of = kNoFork) {
    PlannedChunk chunk;
    chunk.sequence = *r->sequence;
    chunk.begin = r->computed;
    chunk.tokens.assign(r->context.begin() + r->computed, r->context.begin() + r->computed + take);
    chunk.new_sequence = new_sequence;
    chunk.fork_of = fork_of;
    chunk.sample = take == r->pending();
    planned_blocks += cache_->BlocksToAppend(*r->sequence, take);
    planned_tokens[r] = take;
    budget -= take;
    plan.chunks.push_back(std::move(chunk));
    owners.push_back(r);
  };
  // How many positions the pool can still give a sequence: its last block's room plus free blocks.
  auto room = [&](const Request* r) {
    return cache_->BlocksFor(r->computed) * cache_->block_size() - r->computed +
           free_blocks() * cache_->block_size();
  };

  // 1. Decodes, oldest first; the newest running sequence is always unplanned (or r itself).
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Request* r = running_[i];
    if (!r->decoding()) continue;
    bool preempted_self = false;
    while (cache_->BlocksToAppend(*r->sequence, 1) > free_blocks()) {
      Request* victim = running_.back();
      Preempt(victim);
      if (victim == r) {
        preempted_self = true;
        break;
      }
    }
    if (preempted_self) break;
    add_chunk(r, 1, /*new_sequence=*/false);
  }
  // 2. Prefill (or recompute) chunks of running sequences.
  for (Request* r : running_) {
    if (budget <= 0) break;
    if (r->decoding() || planned_tokens.contains(r)) continue;
    const int64_t take = std::min({r->pending(), budget, room(r)});
    if (take > 0) add_chunk(r, take, /*new_sequence=*/r->computed == 0);
  }
  // 3. Admission from the head of the queue.
  while (!waiting_.empty() && budget > 0 &&
         static_cast<int64_t>(running_.size()) < options_.max_running_sequences) {
    Request* r = waiting_.front();
    int64_t promised = 0;  // blocks running sequences still need to complete their context
    for (const Request* other : running_) {
      const int64_t after_step = other->computed + planned_tokens[other];
      promised +=
          std::max<int64_t>(0, cache_->BlocksFor(static_cast<int64_t>(other->context.size())) -
                                   cache_->BlocksFor(after_step));
    }
    // A choice of an n > 1 request forks its prompt's leading blocks from a running sibling.
    const int64_t shared = SharedPromptPositions(*r);
    const Request* source = nullptr;
    if (shared > 0) {
      bool wait = false;
      source = ForkSource(*r, shared, wait);
      if (source == nullptr && wait) break;  // the sibling computes them within a few steps
    }
    const int64_t shared_blocks = source != nullptr ? cache_->BlocksFor(shared) : 0;
    const int64_t needed = cache_->BlocksFor(static_cast<int64_t>(r->context.size())) -
                           shared_blocks + static_cast<int64_t>(running_.size());
    if (free_blocks() - promised < needed) break;
    std::optional<SequenceId> forked_from;
    absl::StatusOr<SequenceId> sequence = absl::UnimplementedError("no sibling to fork from");
    if (source != nullptr) {
      sequence = cache_->Fork(*source->sequence, shared);
      if (sequence.ok()) forked_from = *source->sequence;
    }
    // Without a fork (a cache that cannot) the choice computes its whole prompt: more blocks.
    if (!forked_from && source != nullptr && free_blocks() - promised < needed + shared_blocks) {
      break;
    }
    if (!forked_from) sequence = cache_->AddSequence();
    if (!sequence.ok()) break;
    waiting_.pop_front();
    r->sequence = *sequence;
    r->computed = forked_from ? shared : 0;
    if (forked_from) ++forked_choices_;
    if (!r->admitted) r->admitted = Clock::now();
    running_.push_back(r);
    add_chunk(r, std::min({r->pending(), budget, room(r)}), /*new_sequence=*/true,
              forked_from.value_or(kNoFork));
  }
  return !plan.chunks.empty();
}

StepPlan ContinuousBatcher::Schedule(std::vector<Request*>& owners) {
  StepPlan plan;
  while (!TrySchedule(plan, owners) && !running_.empty()) {
    // Every running sequence is stuck waiting for blocks: make room by recomputing the newest.
    Preempt(running_.back());
  }
  plan.step = static_cast<uint64_t>(steps_total_);
  plan.released = std::exchange(released_, {});
  plan.preempted = std::exchange(preempted_, {});
  return plan;
}

bool ContinuousBatcher::SampleNext(Request& r, std::span<const float> logits) {
  SampledToken sampled = r.sampler.Sample(logits);
  const int32_t token = sampled.token;
  if (r.request.params.logprobs >= 0) r.result.logprobs.push_back(std::move(sampled));
  return AcceptToken(r, token);
}

bool ContinuousBatcher::AcceptToken(Request& r, int32_t token) {
  GenerationResult& result = r.result;
  if (result.completion_tokens == 0) {
    r.time_to_first_token_seconds =
        std::chrono::duration<double>(Clock::now() - r.submitted).count();
    prompt_tokens_total_ += result.prompt_tokens;
  }
  ++result.completion_tokens;
  ++generated_tokens_total_;
  r.context.push_back(token);
  if (std::find(r.stop_ids.begin(), r.stop_ids.end(), token) != r.stop_ids.end()) {
    result.finish_reason = FinishReason::kStop;
    if (tokenizer_ != nullptr) {
      result.text = tokenizer_->Decode(result.tokens, /*skip_special_tokens=*/true);
    }
    return true;
  }
  result.tokens.push_back(token);
  if (r.request.on_text_token) r.request.on_text_token(token);
  // Stop strings are matched incrementally; the text is decoded whole once, at the end.
  const bool has_stop_strings = !r.request.params.stop_strings.empty();
  if (tokenizer_ != nullptr && has_stop_strings) {
    if (!r.stop_matcher) r.stop_matcher.emplace(*tokenizer_, r.request.params.stop_strings);
    // Before min_tokens a stop string does not end the completion (vLLM's rule).
    if (auto at = r.stop_matcher->Append(token);
        at && result.completion_tokens >= r.request.params.min_tokens) {
      result.text = r.stop_matcher->text().substr(0, *at);
      result.finish_reason = FinishReason::kStop;
      return true;
    }
  }
  // As Generator: stop at max_tokens, or when feeding the token would pass the model's positions.
  if (result.completion_tokens >= r.request.params.max_tokens ||
      r.computed + 1 >= model_.config().max_position_embeddings) {
    result.finish_reason = FinishReason::kLength;
    if (tokenizer_ != nullptr) {
      result.text = tokenizer_->Decode(result.tokens, /*skip_special_tokens=*/true);
    }
    return true;
  }
  return false;
}

std::vector<EngineResult> ContinuousBatcher::Step() {
  std::vector<EngineResult> finished = std::exchange(ready_, {});
  if (waiting_.empty() && running_.empty()) return finished;

  std::vector<Request*> owners;
  StepPlan plan = Schedule(owners);
  absl::Status status = plan_hook_ ? plan_hook_(plan) : absl::OkStatus();
  std::vector<SequenceChunk> chunks;
  chunks.reserve(plan.chunks.size());
  for (const PlannedChunk& chunk : plan.chunks) {
    chunks.push_back({chunk.sequence, chunk.tokens, /*all_logits=*/false});
  }
  if (model_.backend().samples_on_device()) {
    return FinishDeviceStep(std::move(plan), chunks, owners, status, std::move(finished));
  }
  absl::StatusOr<Tensor> logits =
      status.ok() ? model_.Forward(chunks, *cache_) : absl::StatusOr<Tensor>(status);
  ++steps_total_;
  last_plan_ = std::move(plan);
  if (!logits.ok()) {
    // The cache may hold part of this step; fail the step's requests rather than guess.
    for (Request* r : owners) {
      Retire(r,
             absl::InternalError(absl::StrFormat("request '%s': step %d failed: %s", r->request.id,
                                                 steps_total_ - 1, logits.status().ToString())),
             finished);
    }
    return finished;
  }
  const int64_t vocab = model_.config().vocab_size;
  for (size_t c = 0; c < owners.size(); ++c) {
    Request* r = owners[c];
    const PlannedChunk& chunk = last_plan_.chunks[c];
    r->computed += static_cast<int64_t>(chunk.tokens.size());
    if (!chunk.sample) continue;
    if (SampleNext(*r, std::span<const float>(logits->row(static_cast<int64_t>(c)), vocab))) {
      Retire(r, absl::OkStatus(), finished);
    }
  }
  return finished;
}

// The GPU path: the forward and the sampling run on the device and only the ids come back.
// Each request's draw depends on (its seed, its sampled-token count), so results do not depend
// on the batch (the device sampler's stream, not engine::Sampler's). Every sampling feature runs
// there: penalties and min_tokens masking on a device copy of the row (bit-identical to
// engine::Sampler::Processed), and logprobs (the chosen id and up to kMaxTopLogprobs
// alternatives under the raw logits, engine::TopLogprobs's order), which come back as small
// arrays with the ids. No logits row is copied to the host any more; engine::Sampler still
// records every token (its count of sampled tokens is min_tokens's clock for stop strings).
std::vector<EngineResult> ContinuousBatcher::FinishDeviceStep(StepPlan plan,
                                                              std::span<const SequenceChunk> chunks,
                                                              std::span<Request* const> owners,
                                                              absl::Status status,
                                                              std::vector<EngineResult> finished) {
  std::vector<kernels::DeviceSamplingParams> params(chunks.size());
  bool any_logprobs = false;
  for (size_t c = 0; c < owners.size(); ++c) {
    Request& r = *owners[c];
    const SamplingParams& p = r.request.params;
    kernels::DeviceSamplingParams& row = params[c];
    row.temperature = p.temperature;
    row.top_k = static_cast<int32_t>(p.top_k);
    row.top_p = p.top_p;
    row.seed = p.seed;
    row.step = static_cast<uint64_t>(r.result.completion_tokens);
    if (!plan.chunks[c].sample) continue;
    if (!r.device_penalties) {
      const std::span<const int32_t> context(r.context);
      const size_t prompt = r.request.prompt.size();
      r.device_penalties.emplace(p, context.first(prompt), context.subspan(prompt), r.stop_ids);
    }
    row.repetition_penalty = p.repetition_penalty;
    row.frequency_penalty = p.frequency_penalty;
    row.presence_penalty = p.presence_penalty;
    row.penalties = r.device_penalties->Entries();
    row.top_logprobs = p.logprobs;
    any_logprobs = any_logprobs || p.logprobs >= 0;
  }
  std::vector<float> logprobs;
  std::vector<kernels::DeviceTopLogprob> top;
  absl::StatusOr<std::vector<int32_t>> tokens =
      status.ok()
          ? model_.ForwardAndSample(chunks, *cache_, params, any_logprobs ? &logprobs : nullptr, {},
                                    nullptr, any_logprobs ? &top : nullptr)
          : absl::StatusOr<std::vector<int32_t>>(status);
  ++steps_total_;
  last_plan_ = std::move(plan);
  if (!tokens.ok()) {
    for (Request* r : owners) {
      Retire(r,
             absl::InternalError(absl::StrFormat("request '%s': step %d failed: %s", r->request.id,
                                                 steps_total_ - 1, tokens.status().ToString())),
             finished);
    }
    return finished;
  }
  const int64_t vocab = model_.config().vocab_size;
  for (size_t c = 0; c < owners.size(); ++c) {
    Request* r = owners[c];
    const PlannedChunk& chunk = last_plan_.chunks[c];
    r->computed += static_cast<int64_t>(chunk.tokens.size());
    if (!chunk.sample) continue;
    const int32_t token = (*tokens)[c];
    const int32_t wanted = r->request.params.logprobs;
    if (wanted >= 0) {
      SampledToken sampled;
      sampled.token = token;
      sampled.logprob = logprobs[c];
      const int64_t reported = std::min<int64_t>(wanted, vocab);
      for (int64_t s = 0; s < reported; ++s) {
        const kernels::DeviceTopLogprob& entry = top[c * kernels::kMaxDeviceTopLogprobs + s];
        sampled.top.push_back({entry.token, entry.logprob});
      }
      r->result.logprobs.push_back(std::move(sampled));
    }
    r->sampler.Record(token);
    r->device_penalties->Record(token);
    if (AcceptToken(*r, token)) Retire(r, absl::OkStatus(), finished);
  }
  return finished;
}

}  // namespace flatfleet::engine
