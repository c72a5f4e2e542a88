#include "coordinator/server/model_memory.h"

#include <filesystem>
#include <memory>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "worker/model/demo_model.h"

namespace flatfleet::coordinator {

absl::StatusOr<quant::CheckpointShapes> ReadModelShapes(const ModelSpec& model) {
  // The worker builds the demo model from this config with seeded weights.
  if (model.path == kBuiltinDemoModel) return quant::ConfigOnlyShapes(engine::DemoModelConfig());
  std::error_code error;
  if (!std::filesystem::is_regular_file(std::filesystem::path(model.path) / "config.json", error)) {
    return absl::NotFoundError(
        absl::StrCat("model '", model.name, "': no config.json in ", model.path));
  }
  absl::StatusOr<quant::CheckpointShapes> shapes = quant::ReadCheckpointShapes(model.path);
  if (!shapes.ok()) {
    return absl::Status(shapes.status().code(),
                        absl::StrCat("model '", model.name, "': ", shapes.status().message()));
  }
  return shapes;
}

RankMemoryNeed ModelRankNeed(quant::CheckpointShapes shapes, quant::RankMemoryOptions options) {
  auto shared = std::make_shared<const quant::CheckpointShapes>(std::move(shapes));
  return [shared, options](uint32_t tp, WorkerDevice device) -> absl::StatusOr<RankNeed> {
    quant::RankMemoryOptions rank_options = options;
    rank_options.tp_size = static_cast<int>(tp);
    rank_options.engine =
        device == WorkerDevice::kCpu ? quant::EngineKind::kCpu : quant::EngineKind::kCuda;
    absl::StatusOr<quant::RankMemoryEstimate> estimate =
        quant::EstimateRankMemory(*shared, rank_options);
    if (!estimate.ok()) return estimate.status();
    return RankNeed{static_cast<uint64_t>(estimate->total_bytes()), estimate->Summary()};
  };
}

}  // namespace flatfleet::coordinator
