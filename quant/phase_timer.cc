#include "quant/phase_timer.h"

namespace flatfleet::quant {
namespace {

thread_local PhaseTimes* current_sink = nullptr;
thread_local ScopedPhase* current_phase = nullptr;

}  // namespace

std::string_view QuantizePhaseName(QuantizePhase phase) {
  switch (phase) {
    case QuantizePhase::kRead:
      return "read";
    case QuantizePhase::kCalibrateForward:
      return "calibrate_forward";
    case QuantizePhase::kStatistics:
      return "statistics";
    case QuantizePhase::kGramFinalize:
      return "gram_finalize";
    case QuantizePhase::kGptqSolve:
      return "gptq_solve";
    case QuantizePhase::kRtn:
      return "rtn";
    case QuantizePhase::kFlatQuantTraining:
      return "flatquant_training";
    case QuantizePhase::kQuantizeOther:
      return "quantize_other";
    case QuantizePhase::kQuantizedForward:
      return "quantized_forward";
    case QuantizePhase::kPack:
      return "pack";
    case QuantizePhase::kWrite:
      return "write";
    case QuantizePhase::kFree:
      return "free";
    case QuantizePhase::kCount:
      break;
  }
  return "unknown";
}

double PhaseTimes::total() const {
  double sum = 0.0;
  for (double s : seconds) sum += s;
  return sum;
}

PhaseRecorder::PhaseRecorder(PhaseTimes& sink) : previous_(current_sink) { current_sink = &sink; }

PhaseRecorder::~PhaseRecorder() { current_sink = previous_; }

ScopedPhase::ScopedPhase(QuantizePhase phase) : sink_(current_sink), phase_(phase) {
  if (sink_ == nullptr) return;
  parent_ = current_phase;
  current_phase = this;
  start_ = std::chrono::steady_clock::now();
}

ScopedPhase::~ScopedPhase() {
  if (sink_ == nullptr) return;
  const std::chrono::steady_clock::duration elapsed = std::chrono::steady_clock::now() - start_;
  (*sink_)[phase_] += std::chrono::duration<double>(elapsed - inner_).count();
  // A parent opened under another recorder (or none) is not this sink's: it is not charged.
  if (parent_ != nullptr && parent_->sink_ == sink_) parent_->inner_ += elapsed;
  current_phase = parent_;
}

}  // namespace flatfleet::quant
