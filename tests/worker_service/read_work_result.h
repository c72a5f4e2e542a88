// Reads the next result of a RunWork stream, skipping the heartbeats the worker interleaves.
#pragma once

#include "flatfleet/v1/worker.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace flatfleet::engine::testing {

template <typename Stream>
bool ReadWorkResult(Stream& stream, v1::WorkResult* result) {
  while (stream.Read(result)) {
    if (!result->has_heartbeat()) return true;
  }
  return false;
}

}  // namespace flatfleet::engine::testing
