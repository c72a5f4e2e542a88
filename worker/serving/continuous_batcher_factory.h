// Builds the continuous-batching engine (worker/batching/) for each loaded model.
#pragma once

#include "worker/batching/continuous_batcher.h"
#include "worker/serving/engine_factory.h"

namespace flatfleet::engine {

EngineFactory ContinuousBatcherFactory(ContinuousBatcherOptions options = {});

}  // namespace flatfleet::engine
