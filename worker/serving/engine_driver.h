// Owns an InferenceEngine and the one thread that calls it. Other threads queue submissions and
// cancellations; the engine thread applies them between steps and keeps calling Step() while
// there is work, so engines need not be thread-safe and a long step never blocks an RPC.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "worker/serving/inference_engine.h"

namespace flatfleet::engine {

class EngineDriver {
 public:
  // Called on the engine thread, exactly once per submission: with the engine's result, or with
  // the error that kept Submit from queueing it. Must not call back into the driver's waits.
  using ResultCallback = std::function<void(EngineResult)>;
  // Called after every step on the engine thread (for gauges), and once from the constructor.
  using StepObserver = std::function<void(const EngineStats&)>;

  explicit EngineDriver(std::unique_ptr<InferenceEngine> engine, StepObserver on_step = nullptr);
  // Cancels everything outstanding, delivers the results and joins the engine thread.
  ~EngineDriver();

  EngineDriver(const EngineDriver&) = delete;
  EngineDriver& operator=(const EngineDriver&) = delete;

  void Submit(EngineRequest request, ResultCallback on_done);
  void Cancel(const std::string& id);
  void CancelAll();

  // Submitted requests whose callback has not run yet.
  int64_t Outstanding() const;
  // The engine's stats after its latest step.
  EngineStats Stats() const;
  // Waits until nothing is outstanding; false on timeout.
  bool WaitUntilNothingOutstanding(absl::Duration timeout) const;

 private:
  struct Command {
    enum class Kind { kSubmit, kCancel, kCancelAll } kind;
    EngineRequest request;  // kSubmit; request.id for kCancel
    ResultCallback on_done;
  };

  void Loop();
  void Apply(Command command);
  void Deliver(EngineResult result);

  std::unique_ptr<InferenceEngine> engine_;
  const StepObserver on_step_;
  // Engine thread only.
  std::unordered_map<std::string, ResultCallback> callbacks_;

  mutable absl::Mutex mutex_;
  std::deque<Command> commands_ ABSL_GUARDED_BY(mutex_);
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  int64_t outstanding_ ABSL_GUARDED_BY(mutex_) = 0;
  EngineStats stats_ ABSL_GUARDED_BY(mutex_);

  std::thread thread_;
};

}  // namespace flatfleet::engine
