// What one tensor-parallel rank of the served model needs on a worker's device, for the group
// planner: the checkpoint's config.json, tensor headers and quantization.json read once
// (worker/quantized/rank_memory_estimate.h counts what the engine holds), then estimated per tp
// and worker kind (GPU: the CUDA engine, bf16; CPU: the float32 reference).
#pragma once

#include "absl/status/statusor.h"
#include "coordinator/server/group_planner.h"
#include "coordinator/server/model_spec.h"
#include "worker/quantized/rank_memory_estimate.h"

namespace flatfleet::coordinator {

// The model directory's shapes (NotFound naming the model when it has no config.json; errors of
// malformed files name the file and field), or the built-in demo model's config.
absl::StatusOr<quant::CheckpointShapes> ReadModelShapes(const ModelSpec& model);

// The planner's need function over `shapes` (kept by the function): `options` with its engine
// and tp_size set per call.
RankMemoryNeed ModelRankNeed(quant::CheckpointShapes shapes, quant::RankMemoryOptions options);

}  // namespace flatfleet::coordinator
