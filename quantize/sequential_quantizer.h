// Layer-by-layer (sequential) calibration and quantization of a checkpoint in bounded memory,
// as GPTQ/AutoGPTQ and FlatQuant do it: the calibration tokens' hidden states go through the
// already quantized prefix one decoder layer at a time.
//
//   X_0 = embedding rows of the calibration tokens            [P, hidden], P = tokens
//   for each decoder layer l:
//     read layer l's float tensors (per tensor, from the mapped safetensors)
//     build it as a one-layer model on a QuantizedCpuBackend (DecoderLayerWindow)
//     calibrate: run X_l through it in float, each linear recording its statistics
//                (GPTQ's X^T X, activation ranges, FlatQuant's training rows)
//     quantize its linears one by one, each freeing its float copies right after
//     X_{l+1} = the quantized layer's output on X_l (the next layer's inputs see the
//                quantization error of every layer before it), or with kFloatPrefix the float
//                layer's output, captured during calibration (the all-at-once statistics)
//     stream its quantized tensors and norms into the shard writer
//     free the layer (float weights, statistics, codes) and give back its mapped pages
//   copy the embeddings, final norm and LM head (byte for byte), write quantization.json and
//   model.safetensors.index.json, and move the directory into place atomically.
//
// Peak memory (docs/QUANTIZATION.md states and measures it): one layer's float32 weights held
// once (the float handle calibration runs on), plus, for the one linear being quantized, its
// row-major weight (unpacked from its handle, which is freed first), folded weight and codes,
// plus the calibration statistics of that layer (GPTQ: in_features^2 doubles per linear,
// factored in place by GPTQ), plus the hidden states (a few P x hidden float32 arrays); never
// the whole model.
//
// Sparse-MoE experts: each expert's routed calibration tokens are counted; an expert linear with
// too few is quantized data-free, or by GPTQ with more dampening
// (quant/expert_calibration_fallback.h). Both go to the progress line and quantization.json's
// "expert_calibration".
//
// Resumable: after each layer the partial output (shards so far, the hidden states X_{l+1} and
// the manifest so far) is made durable in the work directory, never in `out_dir`; `resume`
// continues from the last finished layer (the result is identical to an uninterrupted run).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "quant/phase_timer.h"
#include "quant/recipes.h"
#include "quantize/quantize_model.h"
#include "worker/model/llama_model.h"

namespace flatfleet::quant {

// One decoder layer done (layer counts from 1).
struct LayerProgress {
  int64_t layer = 0;
  int64_t layers = 0;
  double layer_seconds = 0.0;
  double elapsed_seconds = 0.0;  // this run's
  double eta_seconds = 0.0;
  int64_t peak_rss_bytes = 0;  // of this process so far (getrusage)
  bool resumed = false;        // true for the layers a resumed run found done
  // Where layer_seconds went (quant/phase_timer.h): exclusive wall time per phase, summing to at
  // most layer_seconds (the rest, "other", is the bookkeeping between the timers). All zero for
  // resumed layers.
  PhaseTimes phases;
  // Sparse-MoE layers (else experts == 0): calibration tokens the router sent to each expert
  // (the rows its linears saw), and of the experts' linears how many were quantized by the
  // data-free fallback (RTN with the clip search) and by GPTQ with raised dampening
  // (quant/expert_calibration_fallback.h).
  int64_t experts = 0;
  int64_t expert_tokens_min = 0;
  int64_t expert_tokens_median = 0;  // the lower median for an even count
  int64_t expert_tokens_max = 0;
  int64_t expert_linears = 0;
  int64_t expert_linears_rtn = 0;
  int64_t expert_linears_damped = 0;
};

// What each layer is calibrated on.
enum class CalibrationInputs {
  // The outputs of the already quantized layers before it (GPTQ's and AutoGPTQ's practice: each
  // layer's correction sees the error the prefix makes). Costs a second, quantized forward of
  // the layer.
  kQuantizedPrefix,
  // The float model's activations: the statistics of the all-at-once path, in bounded memory.
  kFloatPrefix,
};

struct SequentialQuantizeOptions {
  std::filesystem::path source_dir;
  std::filesystem::path out_dir;
  bool force = false;
  // Partial output; default: the hidden sibling `.NAME.quantize-work` of out_dir.
  std::filesystem::path work_dir;
  bool resume = false;  // continue from work_dir's last finished layer (else start afresh)
  int64_t shard_bytes = int64_t{4} << 30;
  // Calibration tokens per forward (whole sequences, at least one).
  int64_t batch_tokens = 512;
  CalibrationInputs calibration_inputs = CalibrationInputs::kQuantizedPrefix;
  engine::ModelOptions model_options;  // bf16 rotary frequencies (tensor parallelism ignored)
  nlohmann::json calibration_info = nlohmann::json::object();
  std::function<void(const LayerProgress&)> progress;  // optional
  // Test hook: stop with an error after this many layers of this run (simulates a crash).
  int64_t stop_after_layers = -1;
};

// Quantizes options.source_dir with `recipe`, calibrated on `calibration`, into
// options.out_dir. Errors name the layer; nothing is written to out_dir unless it succeeds.
absl::Status QuantizeSequentially(const QuantRecipe& recipe, const CalibrationData& calibration,
                                  const SequentialQuantizeOptions& options);

// The default work directory of `out_dir`.
std::filesystem::path DefaultWorkDirectory(const std::filesystem::path& out_dir);

}  // namespace flatfleet::quant
