// Where one layer's quantization time goes: wall time per phase, for `flatfleet quantize`'s
// per-layer progress (sequential_quantizer.h's LayerProgress::phases).
//
// A PhaseRecorder installed on a thread collects the ScopedPhase timers opened on that thread
// while it lives; without one a ScopedPhase reads no clock and costs a thread-local load, so the
// timers can sit in the quantizer's inner code (the statistics capture of every calibration
// linear, the GPTQ solve) without taxing the other callers. Phases nest and are exclusive: an
// inner phase's time is taken out of the phase around it, so the phases of a layer sum to the
// time spent inside its outermost timers (never more than the layer's wall time). Timers opened
// on other threads (thread-pool workers) are not counted: the thread that waits for them counts
// that time in its own enclosing phase.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <string_view>

namespace flatfleet::quant {

enum class QuantizePhase {
  kRead,               // read the layer's tensors (mapped safetensors), widen, build the window
  kCalibrateForward,   // the float calibration forward, less its statistics capture
  kStatistics,         // statistics capture in it (channel maxima, row sample, X^T X)
  kGramFinalize,       // GPTQ's Hessian from the statistics (device copy down, transforms)
  kGptqSolve,          // the GPTQ solve (CPU or GPU)
  kRtn,                // round-to-nearest weight quantization (with clip search if any)
  kFlatQuantTraining,  // FlatQuant's transform training
  kQuantizeOther,      // the rest of quantizing the linears (unpack, fold, integer scales)
  kQuantizedForward,   // the quantized layer's forward (--calib-inputs quantized)
  kPack,               // quantized tensors into their stored layout
  kWrite,              // tensors into the shard writer, sync, the resumable state
  kFree,               // the layer freed (window model, statistics, codes) and trimmed
  kCount,
};

inline constexpr size_t kQuantizePhaseCount = static_cast<size_t>(QuantizePhase::kCount);

// A short stable name ("gptq_solve"): progress lines, --phase-times JSON, tests.
std::string_view QuantizePhaseName(QuantizePhase phase);

struct PhaseTimes {
  std::array<double, kQuantizePhaseCount> seconds{};

  double& operator[](QuantizePhase phase) { return seconds[static_cast<size_t>(phase)]; }
  double operator[](QuantizePhase phase) const { return seconds[static_cast<size_t>(phase)]; }
  double total() const;
};

// Collects the phases timed on this thread into `sink` (added to it) while alive. One per
// thread at a time; the timers opened under it must close before it is destroyed.
class PhaseRecorder {
 public:
  explicit PhaseRecorder(PhaseTimes& sink);
  ~PhaseRecorder();
  PhaseRecorder(const PhaseRecorder&) = delete;
  PhaseRecorder& operator=(const PhaseRecorder&) = delete;

 private:
  PhaseTimes* previous_;
};

// Times its scope as `phase` on this thread's recorder, if any.
class ScopedPhase {
 public:
  explicit ScopedPhase(QuantizePhase phase);
  ~ScopedPhase();
  ScopedPhase(const ScopedPhase&) = delete;
  ScopedPhase& operator=(const ScopedPhase&) = delete;

 private:
  PhaseTimes* sink_;
  QuantizePhase phase_;
  ScopedPhase* parent_ = nullptr;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::duration inner_{};  // the nested phases' time
};

}  // namespace flatfleet::quant
