#include "worker/serving/engine_driver.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace flatfleet::engine {

EngineDriver::EngineDriver(std::unique_ptr<InferenceEngine> engine, StepObserver on_step)
    : engine_(std::move(engine)), on_step_(std::move(on_step)) {
  // Report the idle engine (e.g. its KV-cache size) before the first step.
  const EngineStats stats = engine_->Stats();
  {
    absl::MutexLock lock(&mutex_);
    stats_ = stats;
  }
  if (on_step_) on_step_(stats);
  thread_ = std::thread([this] { Loop(); });
}

EngineDriver::~EngineDriver() {
  {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
    commands_.push_back({Command::Kind::kCancelAll, {}, nullptr});
  }
  thread_.join();
}

void EngineDriver::Submit(EngineRequest request, ResultCallback on_done) {
  absl::MutexLock lock(&mutex_);
  ++outstanding_;
  commands_.push_back({Command::Kind::kSubmit, std::move(request), std::move(on_done)});
}

void EngineDriver::Cancel(const std::string& id) {
  absl::MutexLock lock(&mutex_);
  EngineRequest request;
  request.id = id;
  commands_.push_back({Command::Kind::kCancel, std::move(request), nullptr});
}

void EngineDriver::CancelAll() {
  absl::MutexLock lock(&mutex_);
  commands_.push_back({Command::Kind::kCancelAll, {}, nullptr});
}

int64_t EngineDriver::Outstanding() const {
  absl::MutexLock lock(&mutex_);
  return outstanding_;
}

EngineStats EngineDriver::Stats() const {
  absl::MutexLock lock(&mutex_);
  return stats_;
}

bool EngineDriver::WaitUntilNothingOutstanding(absl::Duration timeout) const {
  absl::MutexLock lock(&mutex_);
  auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mutex_) { return outstanding_ == 0; };
  return mutex_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

void EngineDriver::Apply(Command command) {
  switch (command.kind) {
    case Command::Kind::kSubmit: {
      const std::string id = command.request.id;
      if (callbacks_.contains(id)) {
        EngineResult rejected;
        rejected.id = id;
        rejected.status = absl::AlreadyExistsError(absl::StrCat("request id '", id, "' is live"));
        command.on_done(std::move(rejected));
        absl::MutexLock lock(&mutex_);
        --outstanding_;
        return;
      }
      absl::Status submitted = engine_->Submit(std::move(command.request));
      if (!submitted.ok()) {
        EngineResult rejected;
        rejected.id = id;
        rejected.status = std::move(submitted);
        command.on_done(std::move(rejected));
        absl::MutexLock lock(&mutex_);
        --outstanding_;
        return;
      }
      callbacks_.emplace(id, std::move(command.on_done));
      return;
    }
    case Command::Kind::kCancel:
      engine_->Cancel(command.request.id);
      return;
    case Command::Kind::kCancelAll:
      for (const auto& [id, callback] : callbacks_) engine_->Cancel(id);
      return;
  }
}

void EngineDriver::Deliver(EngineResult result) {
  auto it = callbacks_.find(result.id);
  if (it == callbacks_.end()) return;  // not ours (engines report only what was submitted)
  ResultCallback callback = std::move(it->second);
  callbacks_.erase(it);
  callback(std::move(result));
  absl::MutexLock lock(&mutex_);
  --outstanding_;
}

void EngineDriver::Loop() {
  while (true) {
    std::deque<Command> commands;
    bool stopping = false;
    {
      absl::MutexLock lock(&mutex_);
      if (engine_->Idle()) {
        auto has_news = [this]() ABSL_SHARED_LOCKS_REQUIRED(mutex_) {
          return stopping_ || !commands_.empty();
        };
        mutex_.Await(absl::Condition(&has_news));
      }
      commands.swap(commands_);
      stopping = stopping_;
    }
    for (Command& command : commands) Apply(std::move(command));
    if (stopping) {
      // Cancel whatever arrived with or after the stop, then let the engine report it all.
      for (const auto& [id, callback] : callbacks_) engine_->Cancel(id);
      if (engine_->Idle()) break;
    }
    std::vector<EngineResult> results;
    if (!engine_->Idle()) results = engine_->Step();
    // Stats first, so whoever gets a result already sees it counted.
    const EngineStats stats = engine_->Stats();
    {
      absl::MutexLock lock(&mutex_);
      stats_ = stats;
    }
    if (on_step_) on_step_(stats);
    for (EngineResult& result : results) Deliver(std::move(result));
  }
  // An engine that went idle without reporting some request still owes its caller an answer.
  std::vector<std::string> leftovers;
  for (const auto& [id, callback] : callbacks_) leftovers.push_back(id);
  for (const std::string& id : leftovers) {
    EngineResult result;
    result.id = id;
    result.status = absl::CancelledError("the engine stopped");
    Deliver(std::move(result));
  }
}

}  // namespace flatfleet::engine
