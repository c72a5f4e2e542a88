#include "worker/serving/model_loader.h"

#include <arpa/inet.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/cpu/cpu_backend.h"
#include "worker/collectives/failure_tracking_stream_collectives.h"
#include "worker/collectives/gloo_communicator.h"
#include "worker/quantized/quantized_checkpoint.h"
#if FLATFLEET_HAVE_CUDA
#include "worker/collectives/nccl_group.h"
#endif
#include "worker/collectives/tcp_store_client.h"
#include "worker/model/demo_model.h"

namespace flatfleet::engine {
namespace {

absl::StatusOr<LoadedModel> LoadCheckpoint(const std::string& dir, const ModelOptions& options,
                                           kernels::Backend& backend) {
  std::error_code error;
  if (!std::filesystem::is_directory(dir, error)) {
    return absl::NotFoundError(absl::StrCat("model directory '", dir, "' does not exist (or is ",
                                            "not a directory); use a checkpoint directory or '",
                                            std::string(kBuiltinDemoModel), "'"));
  }
  LoadedModel loaded;
  if (quant::IsQuantizedCheckpoint(dir)) {
    const bool device = backend.memory() == runtime::MemoryKind::kDevice;
    absl::StatusOr<quant::LoadedQuantizedModel> quantized =
        quant::LoadQuantizedLlamaModel(dir, options, device ? &backend : nullptr);
    if (!quantized.ok()) {
      return absl::Status(
          quantized.status().code(),
          absl::StrCat("cannot load quantized model '", dir, "': ", quantized.status().message()));
    }
    loaded.backend = std::move(quantized->backend);
    loaded.model = std::move(quantized->model);
  } else {
    absl::StatusOr<std::unique_ptr<LlamaModel>> model = LoadLlamaModel(dir, backend, options);
    if (!model.ok()) {
      return absl::Status(model.status().code(), absl::StrCat("cannot load model '", dir,
                                                              "': ", model.status().message()));
    }
    loaded.model = *std::move(model);
  }
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok = tokenizer::LoadTokenizer(dir);
  if (tok.ok()) {
    loaded.tokenizer = *std::move(tok);
  } else if (loaded.model->config().vocab_size >= tokenizer::MakeByteTokenizer()->vocab_size()) {
    // Test checkpoints often ship without a tokenizer; bytes are still valid ids for them.
    loaded.tokenizer = tokenizer::MakeByteTokenizer();
  } else {
    return absl::Status(tok.status().code(), absl::StrCat("cannot load the tokenizer of '", dir,
                                                          "': ", tok.status().message()));
  }
  return loaded;
}

// "HOST:PORT" split, the host as an IPv4 literal.
absl::StatusOr<std::pair<std::string, uint16_t>> SplitAddress(std::string_view address,
                                                              std::string_view field) {
  const size_t colon = address.rfind(':');
  uint32_t port = 0;
  if (colon == std::string_view::npos ||
      !absl::SimpleAtoi(std::string(address.substr(colon + 1)), &port) || port == 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s '%s' is not HOST:PORT", std::string(field), std::string(address)));
  }
  absl::StatusOr<std::string> host = RendezvousHost(address);
  if (!host.ok()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: %s", std::string(field), host.status().message()));
  }
  return std::make_pair(*std::move(host), static_cast<uint16_t>(port));
}

// Connects this rank to its group's other ranks through the rendezvous store.
absl::StatusOr<std::unique_ptr<collectives::FailureTrackingCommunicator>> JoinGroup(
    const v1::LoadShardRequest& request, const CpuModelLoaderOptions& options) {
  const v1::Rendezvous& rendezvous = request.rendezvous();
  const int rank = static_cast<int>(request.tp_rank());
  const int size = static_cast<int>(request.tp_size());
  if (rank >= size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("tp_rank %d is outside a group of tp_size %d", rank, size));
  }
  if (rendezvous.backend() == v1::COLLECTIVE_BACKEND_NCCL) {
    if (options.backend == nullptr || options.backend->memory() != runtime::MemoryKind::kDevice) {
      return absl::FailedPreconditionError(
          "rendezvous.backend NCCL: this CPU worker has only the Gloo backend");
    }
    if (rendezvous.nccl_unique_id().empty()) {
      return absl::InvalidArgumentError(
          "rendezvous.nccl_unique_id is empty; rank 0's OpenRendezvous makes it");
    }
  }
  if (rendezvous.peer_addresses_size() != size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("rendezvous.peer_addresses has %d entries for tp_size %d",
                        rendezvous.peer_addresses_size(), size));
  }
  if (rendezvous.store_address().empty()) {
    return absl::InvalidArgumentError(
        "rendezvous.store_address is empty; call OpenRendezvous on rank 0 first");
  }
  absl::StatusOr<std::string> own_host = RendezvousHost(rendezvous.peer_addresses(rank));
  if (!own_host.ok()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("rendezvous.peer_addresses[%d]: %s", rank, own_host.status().message()));
  }
  absl::StatusOr<std::pair<std::string, uint16_t>> store =
      SplitAddress(rendezvous.store_address(), "rendezvous.store_address");
  if (!store.ok()) return store.status();
  const std::chrono::milliseconds timeout = rendezvous.timeout_ms() > 0
                                                ? std::chrono::milliseconds(rendezvous.timeout_ms())
                                                : options.default_group_timeout;
  const std::string where =
      absl::StrFormat("rank %d of group '%s' (%d ranks, store %s, timeout %d ms)", rank,
                      rendezvous.group_id(), size, rendezvous.store_address(), timeout.count());
  absl::StatusOr<std::unique_ptr<collectives::TcpStoreClient>> client =
      collectives::TcpStoreClient::Connect(store->first, store->second, timeout);
  if (!client.ok()) {
    return absl::Status(client.status().code(),
                        absl::StrFormat("%s: cannot reach the rendezvous store: %s", where,
                                        client.status().message()));
  }
  collectives::GlooCommunicatorOptions gloo;
  gloo.rank = rank;
  gloo.size = size;
  gloo.timeout = timeout;
  gloo.hostname = *own_host;
  gloo.store_prefix = absl::StrCat("tp/", rendezvous.group_id());
  absl::StatusOr<std::unique_ptr<collectives::GlooCommunicator>> communicator =
      collectives::GlooCommunicator::Create(gloo, **client);
  if (!communicator.ok()) {
    return absl::Status(
        communicator.status().code(),
        absl::StrFormat("%s: not every peer joined (is every rank's LoadShard running?): %s", where,
                        communicator.status().message()));
  }
  return std::make_unique<collectives::FailureTrackingCommunicator>(*std::move(communicator));
}

// NCCL groups: after the Gloo join (which carries the group's host messages), every rank joins
// the NCCL communicator for the model's device collectives. Its errors fail the group through
// `tracker`, like a Gloo error.
absl::StatusOr<std::unique_ptr<collectives::StreamCollectives>> JoinDeviceGroup(
    const v1::LoadShardRequest& request, const CpuModelLoaderOptions& options,
    collectives::FailureTrackingCommunicator& tracker) {
  const v1::Rendezvous& rendezvous = request.rendezvous();
  const std::chrono::milliseconds timeout = rendezvous.timeout_ms() > 0
                                                ? std::chrono::milliseconds(rendezvous.timeout_ms())
                                                : options.default_group_timeout;
#if FLATFLEET_HAVE_CUDA
  collectives::NcclGroupOptions nccl;
  nccl.rank = static_cast<int>(request.tp_rank());
  nccl.size = static_cast<int>(request.tp_size());
  nccl.unique_id = rendezvous.nccl_unique_id();
  nccl.device = request.device_index() >= 0 ? request.device_index() : options.cuda_device;
  nccl.timeout = timeout;
  // INT8 only allows compression: the measured table (all_reduce_choice.h) decides per message.
  nccl.compression_allowed = rendezvous.all_reduce_compression() != v1::ALL_REDUCE_COMPRESSION_NONE;
  nccl.compression_block_size = options.compression_block_size;
  absl::StatusOr<std::unique_ptr<collectives::StreamCollectives>> joined =
      collectives::JoinNcclGroup(nccl);
  if (!joined.ok()) {
    return absl::Status(
        joined.status().code(),
        absl::StrFormat("rank %d of group '%s' (device %d, timeout %d ms): NCCL join failed: %s",
                        nccl.rank, rendezvous.group_id(), nccl.device, timeout.count(),
                        joined.status().message()));
  }
  return std::unique_ptr<collectives::StreamCollectives>(
      std::make_unique<collectives::FailureTrackingStreamCollectives>(*std::move(joined), tracker));
#else
  (void)tracker;
  (void)timeout;
  return absl::UnimplementedError(
      "rendezvous.backend NCCL: this worker was built without CUDA (FLATFLEET_CUDA=OFF)");
#endif
}

}  // namespace

absl::StatusOr<std::string> RendezvousHost(std::string_view address) {
  const size_t colon = address.rfind(':');
  std::string host(address.substr(0, colon == std::string_view::npos ? address.size() : colon));
  if (host == "localhost") host = "127.0.0.1";
  in_addr parsed{};
  if (inet_pton(AF_INET, host.c_str(), &parsed) != 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "host '%s' of '%s' is not an IPv4 address (tensor-parallel groups need IPv4 literals)",
        host, std::string(address)));
  }
  return host;
}

ModelLoader CpuModelLoader(CpuModelLoaderOptions options) {
  return [options](const v1::LoadShardRequest& request) -> absl::StatusOr<LoadedModel> {
    if (request.model_path().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model_path is empty; give a checkpoint directory or '",
                       std::string(kBuiltinDemoModel), "'"));
    }
    std::unique_ptr<collectives::FailureTrackingCommunicator> communicator;
    std::unique_ptr<collectives::StreamCollectives> device_collectives;
    ModelOptions model_options;
    if (request.tp_size() > 1) {
      absl::StatusOr<std::unique_ptr<collectives::FailureTrackingCommunicator>> joined =
          JoinGroup(request, options);
      if (!joined.ok()) return joined.status();
      communicator = *std::move(joined);
      if (request.rendezvous().backend() == v1::COLLECTIVE_BACKEND_NCCL) {
        absl::StatusOr<std::unique_ptr<collectives::StreamCollectives>> device =
            JoinDeviceGroup(request, options, *communicator);
        if (!device.ok()) return device.status();
        device_collectives = *std::move(device);
        model_options.tensor_parallel.device_collectives = device_collectives.get();
      }
      TensorParallelContext& tp = model_options.tensor_parallel;
      tp.rank = static_cast<int>(request.tp_rank());
      tp.size = static_cast<int>(request.tp_size());
      tp.communicator = communicator.get();
      tp.compress_all_reduce =
          request.rendezvous().all_reduce_compression() != v1::ALL_REDUCE_COMPRESSION_NONE;
      tp.compression_block_size = options.compression_block_size;
    }
    kernels::Backend& backend =
        options.backend != nullptr ? *options.backend : kernels::cpu::DefaultCpuBackend();
    model_options.load_progress = options.load_progress;
    LoadedModel loaded;
    if (request.model_path() == kBuiltinDemoModel) {
      absl::StatusOr<std::unique_ptr<LlamaModel>> demo =
          MakeDemoModel(backend, /*seed=*/1234, model_options);
      if (!demo.ok()) return demo.status();
      loaded.model = *std::move(demo);
      loaded.tokenizer = tokenizer::MakeByteTokenizer();
    } else {
      absl::StatusOr<LoadedModel> checkpoint =
          LoadCheckpoint(request.model_path(), model_options, backend);
      if (!checkpoint.ok()) return checkpoint.status();
      loaded = *std::move(checkpoint);
    }
    loaded.communicator = std::move(communicator);
    loaded.device_collectives = std::move(device_collectives);
    loaded.tp_rank = static_cast<int>(request.tp_rank());
    loaded.tp_size = std::max<int>(1, static_cast<int>(request.tp_size()));
    return loaded;
  };
}

}  // namespace flatfleet::engine
