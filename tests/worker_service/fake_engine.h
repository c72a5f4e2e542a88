// A scripted InferenceEngine for service tests: requests stay queued until the test releases
// them, and cancellations take effect at the next step, so every interleaving is deterministic.
#pragma once

#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "worker/serving/engine_factory.h"
#include "worker/serving/inference_engine.h"

namespace flatfleet::engine::testing {

// Shared between a test and the engine it scripts (which runs on the engine thread).
class FakeEngineControl {
 public:
  void ReleaseAll() {
    absl::MutexLock lock(&mutex_);
    release_all_ = true;
  }
  bool release_all() const {
    absl::MutexLock lock(&mutex_);
    return release_all_;
  }
  void RecordSubmit(const std::string& id) {
    absl::MutexLock lock(&mutex_);
    submitted_.push_back(id);
  }
  void RecordCancel(const std::string& id) {
    absl::MutexLock lock(&mutex_);
    cancelled_.insert(id);
  }
  // Waits (bounded) until the engine has seen `count` submissions.
  bool WaitForSubmitted(size_t count, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mutex_);
    auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mutex_) { return submitted_.size() >= count; };
    return mutex_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  bool WaitForCancelled(size_t count, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mutex_);
    auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mutex_) { return cancelled_.size() >= count; };
    return mutex_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  std::set<std::string> cancelled() const {
    absl::MutexLock lock(&mutex_);
    return cancelled_;
  }

 private:
  mutable absl::Mutex mutex_;
  bool release_all_ ABSL_GUARDED_BY(mutex_) = false;
  std::vector<std::string> submitted_ ABSL_GUARDED_BY(mutex_);
  std::set<std::string> cancelled_ ABSL_GUARDED_BY(mutex_);
};

// Completes a request with its prompt's length as text once released.
class FakeEngine : public InferenceEngine {
 public:
  explicit FakeEngine(std::shared_ptr<FakeEngineControl> control) : control_(std::move(control)) {}

  absl::Status Submit(EngineRequest request) override {
    control_->RecordSubmit(request.id);
    queued_.push_back({std::move(request), false});
    return absl::OkStatus();
  }
  void Cancel(const std::string& id) override {
    for (Queued& q : queued_) {
      if (q.request.id == id && !q.cancelled) {
        q.cancelled = true;
        control_->RecordCancel(id);
      }
    }
  }
  std::vector<EngineResult> Step() override {
    std::vector<EngineResult> finished;
    const bool release = control_->release_all();
    std::vector<Queued> still_queued;
    for (Queued& q : queued_) {
      if (!q.cancelled && !release) {
        still_queued.push_back(std::move(q));
        continue;
      }
      EngineResult& result = finished.emplace_back();
      result.id = q.request.id;
      if (q.cancelled) {
        result.status = absl::CancelledError("cancelled");
      } else {
        result.result.text = absl::StrCat("prompt of ", q.request.prompt.size(), " tokens");
        result.result.prompt_tokens = static_cast<int64_t>(q.request.prompt.size());
        result.result.completion_tokens = 1;
        result.result.tokens = {65};
        result.total_seconds = 0.002;
        result.time_to_first_token_seconds = 0.001;
      }
    }
    queued_ = std::move(still_queued);
    // The driver steps a busy engine in a loop; do not spin a core while holding requests.
    if (finished.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return finished;
  }
  bool Idle() const override { return queued_.empty(); }
  EngineStats Stats() const override {
    EngineStats stats;
    stats.running_requests = static_cast<int64_t>(queued_.size());
    return stats;
  }

 private:
  struct Queued {
    EngineRequest request;
    bool cancelled = false;
  };
  std::shared_ptr<FakeEngineControl> control_;
  std::vector<Queued> queued_;
};

inline EngineFactory FakeEngineFactory(std::shared_ptr<FakeEngineControl> control) {
  return
      [control](const LlamaModel&,
                const tokenizer::Tokenizer*) -> absl::StatusOr<std::unique_ptr<InferenceEngine>> {
        return std::make_unique<FakeEngine>(control);
      };
}

}  // namespace flatfleet::engine::testing
