#include "kernels/cuda/backend/cuda_backend.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <limits>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "kernels/cuda/activation_ops.h"
#include "kernels/cuda/backend/cuda_quantized_linear.h"
#include "kernels/cuda/bf16_gemm.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/fused_add_rmsnorm.h"
#include "kernels/cuda/grouped_gemm.h"
#include "kernels/cuda/kv_cache_layer.h"
#include "kernels/cuda/logit_penalties.h"
#include "kernels/cuda/moe_permute.h"
#include "kernels/cuda/moe_routing.h"
#include "kernels/cuda/moe_unpermute.h"
#include "kernels/cuda/paged_attention.h"
#include "kernels/cuda/random_fill.h"
#include "kernels/cuda/rotary_kv_write.h"
#include "kernels/cuda/sampling.h"
#include "kernels/cuda/top_logprobs.h"
#include "runtime/cuda/cuda_graph.h"
#include "runtime/cuda/cuda_status.h"
#include "runtime/cuda/cuda_stream.h"
#include "runtime/cuda/device_allocators.h"
#include "runtime/cuda/device_info.h"
#include "runtime/workspace_arena.h"

namespace flatfleet::kernels::cuda_backend {
namespace {

using runtime::ConstTensorView;
using runtime::MemoryKind;
using runtime::ScalarType;
using runtime::TensorView;
using bf16 = __nv_bfloat16;

constexpr size_t kStagingBytes = size_t{64} << 20;

absl::Status Misuse(const char* op, const std::string& detail) {
  return absl::InvalidArgumentError(absl::StrCat("cuda backend ", op, ": ", detail));
}

std::string Shape(const ConstTensorView& v) {
  return absl::StrCat("[", v.rows, ", ", v.cols, "] ", runtime::ScalarName(v.type), " ",
                      runtime::MemoryKindName(v.memory));
}

absl::Status Expect(const ConstTensorView& v, ScalarType type, bool dense, const char* op,
                    const char* what) {
  if (v.memory != MemoryKind::kDevice || v.type != type || (dense && !v.dense())) {
    return Misuse(op, absl::StrCat(what, " must be ", dense ? "dense " : "", "device ",
                                   runtime::ScalarName(type), ", got ", Shape(v)));
  }
  return absl::OkStatus();
}

// A bf16 weight [out, in] on the device, with its bias in both output types (cuBLASLt's bias
// epilogue reads the output's type).
class CudaLinearWeight final : public LinearWeight {
 public:
  CudaLinearWeight(int64_t out, int64_t in) : LinearWeight(out, in) {}
  runtime::Buffer weight;
  runtime::Buffer bias_bf16;
  runtime::Buffer bias_f32;
};

// Keys and values of every layer in one allocation each:
// [layer][block][position][kv head][head_dim] (bf16 or INT8 codes), scales
// [layer][block][position][kv head].
class CudaKvPool final : public KvPool {
 public:
  CudaKvPool(const KvPoolShape& shape, int64_t num_blocks) : KvPool(shape, num_blocks) {}
  absl::Status Grow(int64_t) override {
    return absl::FailedPreconditionError(
        "the device KV pool is sized once at start-up (--gpu-memory-fraction)");
  }
  cuda::KvCacheLayer Layer(int64_t layer) const {
    const int64_t positions = num_blocks_ * shape_.block_size;
    const int64_t elements = positions * shape_.row_size();
    const size_t element = shape_.dtype == KvDtype::kInt8 ? 1 : 2;
    cuda::KvCacheLayer out;
    out.keys = static_cast<char*>(keys.data()) + layer * elements * element;
    out.values = static_cast<char*>(values.data()) + layer * elements * element;
    out.int8 = shape_.dtype == KvDtype::kInt8;
    if (out.int8) {
      out.key_scales =
          static_cast<uint16_t*>(key_scales.data()) + layer * positions * shape_.num_kv_heads;
      out.value_scales =
          static_cast<uint16_t*>(value_scales.data()) + layer * positions * shape_.num_kv_heads;
    }
    out.num_blocks = num_blocks_;
    out.block_size = shape_.block_size;
    out.num_kv_heads = shape_.num_kv_heads;
    out.head_dim = shape_.head_dim;
    return out;
  }
  runtime::Buffer keys, values, key_scales, value_scales;
};

// Device copies of each MoE layer's expert weight pointers (the grouped GEMM reads them there).
struct ExpertPointers {
  // What the device arrays were built from: the table is keyed by the layer's ExpertWeights
  // address, which a later model may reuse, so an entry is valid only while these match.
  std::vector<const void*> host;   // gate, up and down weights of every expert
  runtime::Buffer gate, up, down;  // [experts] const bf16*
};

// The step's metadata in one device buffer: int32 arrays, each 16-byte aligned.
struct DeviceStep {
  const int32_t* token_ids = nullptr;
  const int32_t* positions = nullptr;
  const int32_t* slots = nullptr;
  const int32_t* logit_rows = nullptr;
  const int32_t* query_starts = nullptr;
  const int32_t* context_lengths = nullptr;
  const int32_t* block_tables = nullptr;  // [sequences, max_blocks]
  int64_t max_blocks = 0;
  int64_t max_query_length = 0;
  int64_t max_context_length = 0;
};

class CudaExecutionContext final : public ExecutionContext {
 public:
  static absl::StatusOr<std::unique_ptr<CudaExecutionContext>> Create(int device) {
    FF_ASSIGN_OR_RETURN(runtime::cuda::CudaStream stream,
                        runtime::cuda::CudaStream::Create(device));
    auto context = std::unique_ptr<CudaExecutionContext>(new CudaExecutionContext(device));
    context->stream_ = std::move(stream);
    FF_ASSIGN_OR_RETURN(context->gemm_workspace_,
                        runtime::Buffer::Allocate(runtime::cuda::DeviceAllocator(device),
                                                  cuda::CublasLtGemm::WorkspaceBytes()));
    FF_ASSIGN_OR_RETURN(context->gemm_,
                        cuda::CublasLtGemm::Create(context->gemm_workspace_.data(),
                                                   context->gemm_workspace_.bytes()));
    // Both run on this context's one stream, in order, so they can share the workspace.
    FF_ASSIGN_OR_RETURN(context->int8_gemm_,
                        cuda::CublasLtInt8Gemm::Create(context->gemm_workspace_.data(),
                                                       context->gemm_workspace_.bytes()));
    // The W4A8 fragment GEMM's split counters: zero now, and every call leaves them zero.
    FF_ASSIGN_OR_RETURN(context->split_counters_,
                        runtime::Buffer::Allocate(runtime::cuda::DeviceAllocator(device),
                                                  kSplitCounterCapacity * sizeof(int32_t)));
    FF_CUDA_RETURN_IF_ERROR(
        cudaMemset(context->split_counters_.data(), 0, context->split_counters_.bytes()));
    return context;
  }

  absl::Status ReserveWorkspace(int64_t bytes) override {
    // The backend's own scratch (attention split-K partials, MoE permutation buffers) comes from
    // the same arena: reserve a quarter more for it. Between steps (the last one ended with a
    // host synchronisation), so no scratch is in use.
    arena_.Reset();
    return arena_.Reserve(static_cast<size_t>(bytes + bytes / 4 + (size_t{16} << 20)));
  }
  absl::StatusOr<TensorView> Scratch(ScalarType type, int64_t rows, int64_t cols) override {
    return arena_.Take(type, rows, cols);
  }
  absl::StatusOr<void*> ScratchBytes(size_t bytes) { return arena_.TakeBytes(bytes); }
  runtime::WorkspaceArena& arena() { return arena_; }

  absl::Status BeginStep(const StepBatch& batch) override {
    // The threads that run steps (the engine's, a group follower's) never chose a device: make
    // this context's current, so `serve worker --gpu N` with N > 0 launches on its own GPU.
    FF_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    // The previous step ended with a host synchronisation (logits or ids came back), so the
    // arena and the metadata buffers are free to reuse.
    arena_.Reset();
    // A grown arena moved the scratch a captured graph reads: capture again.
    if (arena_.capacity() != graph_arena_capacity_) {
      graphs_ = std::make_unique<runtime::cuda::CudaGraphCache>();
      graph_arena_capacity_ = arena_.capacity();
    }
    step_ = batch;
    const int64_t sequences = static_cast<int64_t>(batch.sequences.size());
    device_step_.max_blocks = std::max<int64_t>(
        1, batch.block_table_width > 0 ? batch.block_table_width : batch.max_blocks_per_sequence());
    device_step_.max_query_length = batch.max_query_length();
    device_step_.max_context_length =
        batch.context_length_bound > 0 ? batch.context_length_bound : batch.max_context_length();
    const int64_t rows = batch.num_rows();
    const int64_t logits = static_cast<int64_t>(batch.logit_rows.size());
    auto aligned = [](int64_t n) { return (n + 3) / 4 * 4; };  // 16-byte int32 runs
    const int64_t total = 3 * aligned(rows) + aligned(logits) + aligned(sequences + 1) +
                          aligned(sequences) + aligned(sequences * device_step_.max_blocks);
    FF_RETURN_IF_ERROR(EnsureMetadata(total * 4));
    int32_t* host = static_cast<int32_t*>(metadata_host_.data());
    std::fill(host, host + total, 0);
    int64_t offset = 0;
    auto put = [&](const int32_t* values, int64_t count) {
      std::copy(values, values + count, host + offset);
      const int32_t* device = static_cast<const int32_t*>(metadata_device_.data()) + offset;
      offset += aligned(count);
      return device;
    };
    device_step_.token_ids = put(batch.token_ids.data(), rows);
    device_step_.positions = put(batch.positions.data(), rows);
    device_step_.slots = put(batch.slot_mapping.data(), rows);
    device_step_.logit_rows = put(batch.logit_rows.data(), logits);
    std::vector<int32_t> starts(sequences + 1), lengths(sequences),
        tables(sequences * device_step_.max_blocks, 0);
    for (int64_t s = 0; s < sequences; ++s) {
      const StepSequence& seq = batch.sequences[s];
      starts[s] = static_cast<int32_t>(seq.query_begin);
      starts[s + 1] = static_cast<int32_t>(seq.query_begin + seq.num_queries);
      lengths[s] = static_cast<int32_t>(seq.context_length);
      const int64_t blocks = std::min(seq.num_blocks, device_step_.max_blocks);
      std::copy(batch.block_tables.begin() + seq.block_table_begin,
                batch.block_tables.begin() + seq.block_table_begin + blocks,
                tables.begin() + s * device_step_.max_blocks);
    }
    device_step_.query_starts = put(starts.data(), sequences + 1);
    device_step_.context_lengths = put(lengths.data(), sequences);
    device_step_.block_tables = put(tables.data(), static_cast<int64_t>(tables.size()));
    FF_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(metadata_device_.data(), host, total * 4,
                                            cudaMemcpyHostToDevice, stream()));
    return absl::OkStatus();
  }

  absl::Status Synchronize() override { return stream_.Synchronize(); }

  // Timing events cannot be recorded into graphs: no graphs while timing.
  bool supports_graphs() const override { return !timing_; }
  bool HasGraph(int64_t bucket) const override { return graphs_->Contains(bucket); }
  void DropGraphs() override { graphs_ = std::make_unique<runtime::cuda::CudaGraphCache>(); }
  absl::Status BeginGraphCapture() override { return graphs_->BeginCapture(stream()); }
  absl::Status EndGraphCapture(int64_t bucket, bool keep) override {
    absl::Status ended = graphs_->EndCapture(stream(), bucket);
    if (!keep && ended.ok()) graphs_->Erase(bucket);
    return ended;
  }
  absl::Status LaunchGraph(int64_t bucket) override { return graphs_->Launch(bucket, stream()); }

  void EnableOpTiming(bool on) override { timing_ = on; }
  std::map<std::string, double> TakeOpTimes() override {
    stream_.Synchronize().IgnoreError();
    for (const Span& span : spans_) {
      float ms = 0;
      if (cudaEventElapsedTime(&ms, events_[span.begin], events_[span.end]) == cudaSuccess) {
        totals_[span.category] += ms / 1e3;
      }
    }
    spans_.clear();
    open_.clear();
    next_event_ = 0;
    return std::exchange(totals_, {});
  }
  // Marks the start (begin) or end of an op of `category` on the stream when timing is on.
  void Mark(const char* category, bool begin) {
    if (!timing_) return;
    if (next_event_ == static_cast<int64_t>(events_.size())) {
      cudaEvent_t event;
      if (cudaEventCreate(&event) != cudaSuccess) return;
      events_.push_back(event);
    }
    const int64_t event = next_event_++;
    cudaEventRecord(events_[event], stream());
    if (begin) {
      open_.push_back(static_cast<int64_t>(spans_.size()));
      spans_.push_back({category, event, event});
    } else if (!open_.empty()) {  // ops nest (SparseMoe runs SiluMul): close the innermost
      spans_[open_.back()].end = event;
      open_.pop_back();
    }
  }
  int64_t workspace_capacity() const override { return arena_.capacity(); }
  int64_t workspace_high_water() const override { return arena_.high_water(); }

  cudaStream_t stream() const { return stream_.get(); }
  void* native_stream() const override { return stream(); }
  const DeviceStep& device_step() const { return device_step_; }
  cuda::CublasLtGemm& gemm() { return *gemm_; }
  cuda::CublasLtInt8Gemm& int8_gemm() { return *int8_gemm_; }
  SplitCounters split_counters() {
    return {static_cast<int32_t*>(split_counters_.data()), kSplitCounterCapacity};
  }
  int device() const { return device_; }

  // Pinned host memory for small transfers (sampling parameters and results).
  absl::StatusOr<void*> PinnedScratch(size_t bytes) {
    if (bytes > pinned_scratch_.bytes()) {
      FF_ASSIGN_OR_RETURN(pinned_scratch_,
                          runtime::Buffer::Allocate(runtime::cuda::PinnedHostAllocator(),
                                                    std::max(bytes, size_t{1} << 20)));
    }
    return pinned_scratch_.data();
  }

 private:
  explicit CudaExecutionContext(int device)
      : device_(device), arena_(runtime::cuda::DeviceAllocator(device)) {
    // A step larger than the reservation still runs: the arena grows between steps' kernels
    // (a cudaMalloc, counted in workspace_high_water), never silently on replayed graphs.
    arena_.set_growable(true);
  }

  absl::Status EnsureMetadata(size_t bytes) {
    if (bytes <= metadata_device_.bytes()) return absl::OkStatus();
    graphs_ = std::make_unique<runtime::cuda::CudaGraphCache>();  // they read the old buffer
    const size_t grown = std::max(bytes * 2, size_t{1} << 20);
    FF_ASSIGN_OR_RETURN(metadata_host_,
                        runtime::Buffer::Allocate(runtime::cuda::PinnedHostAllocator(), grown));
    FF_ASSIGN_OR_RETURN(metadata_device_,
                        runtime::Buffer::Allocate(runtime::cuda::DeviceAllocator(device_), grown));
    return absl::OkStatus();
  }

  int device_;
  runtime::cuda::CudaStream stream_;
  runtime::WorkspaceArena arena_;
  runtime::Buffer gemm_workspace_;
  std::unique_ptr<cuda::CublasLtGemm> gemm_;
  std::unique_ptr<cuda::CublasLtInt8Gemm> int8_gemm_;
  runtime::Buffer split_counters_;  // int32 [kSplitCounterCapacity], zero between calls
  runtime::Buffer metadata_host_, metadata_device_;
  runtime::Buffer pinned_scratch_;
  DeviceStep device_step_;
  std::unique_ptr<runtime::cuda::CudaGraphCache> graphs_ =
      std::make_unique<runtime::cuda::CudaGraphCache>();
  size_t graph_arena_capacity_ = 0;
  struct Span {
    std::string category;
    int64_t begin, end;
  };
  bool timing_ = false;
  std::vector<cudaEvent_t> events_;
  int64_t next_event_ = 0;
  std::vector<Span> spans_;
  std::vector<int64_t> open_;
  std::map<std::string, double> totals_;
};

// Times one op of the backend when the context's timing is on.
class OpTimer {
 public:
  OpTimer(ExecutionContext& context, const char* category)
      : context_(static_cast<CudaExecutionContext&>(context)) {
    context_.Mark(category, true);
  }
  ~OpTimer() { context_.Mark(nullptr, false); }

 private:
  CudaExecutionContext& context_;
};

CudaExecutionContext& Cuda(ExecutionContext& context) {
  return static_cast<CudaExecutionContext&>(context);
}

const CudaKvPool& Pool(const KvPool& pool) { return static_cast<const CudaKvPool&>(pool); }

std::mutex expert_mutex;
std::map<const ExpertWeights*, ExpertPointers>& ExpertTable() {
  static auto* table = new std::map<const ExpertWeights*, ExpertPointers>();
  return *table;
}

}  // namespace

CudaBackend::CudaBackend(const CudaBackendOptions& options, std::string name)
    : options_(options), name_(std::move(name)) {}

CudaBackend::~CudaBackend() = default;

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(
    const CudaBackendOptions& options) {
  FF_ASSIGN_OR_RETURN(int devices, runtime::cuda::CountDevices());
  if (devices == 0) {
    return absl::FailedPreconditionError("--device cuda: no CUDA device is visible");
  }
  if (options.device < 0 || options.device >= devices) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--gpu %d: only %d CUDA devices are visible", options.device, devices));
  }
  if (!(options.gpu_memory_fraction > 0.0 && options.gpu_memory_fraction <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--gpu-memory-fraction must be in (0, 1], got %g", options.gpu_memory_fraction));
  }
  if (options.kv_dtype == KvDtype::kFloat32) {
    return absl::InvalidArgumentError("the CUDA backend stores the KV cache in bf16 or int8");
  }
  FF_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  return std::unique_ptr<CudaBackend>(
      new CudaBackend(options, absl::StrCat("cuda-bf16:", options.device,
                                            options.kv_dtype == KvDtype::kInt8 ? "+kv-int8" : "")));
}

int64_t CudaBackend::kv_pool_budget_bytes() const {
  absl::StatusOr<runtime::cuda::DeviceMemory> memory =
      runtime::cuda::QueryDeviceMemory(options_.device);
  if (!memory.ok()) return 0;
  const int64_t reserved =
      static_cast<int64_t>((1.0 - options_.gpu_memory_fraction) * memory->total_bytes);
  return std::max<int64_t>(0, memory->free_bytes - reserved);
}

bool CudaBackend::DeviceMemory(int64_t* free_bytes, int64_t* total_bytes) const {
  absl::StatusOr<runtime::cuda::DeviceMemory> memory =
      runtime::cuda::QueryDeviceMemory(options_.device);
  if (!memory.ok()) return false;
  *free_bytes = memory->free_bytes;
  *total_bytes = memory->total_bytes;
  return true;
}

absl::Status CudaBackend::Upload(const ConstTensorView& host, ScalarType type, void* device) {
  std::lock_guard<std::mutex> lock(staging_mutex_);
  if (staging_.bytes() == 0) {
    FF_ASSIGN_OR_RETURN(
        staging_, runtime::Buffer::Allocate(runtime::cuda::PinnedHostAllocator(), kStagingBytes));
  }
  FF_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  const size_t out_element = runtime::ScalarSize(type);
  const int64_t row_bytes = host.cols * static_cast<int64_t>(out_element);
  const int64_t rows_per_chunk =
      std::max<int64_t>(1, static_cast<int64_t>(kStagingBytes) / row_bytes);
  if (row_bytes > static_cast<int64_t>(kStagingBytes)) {
    return absl::InvalidArgumentError("weight rows larger than the staging buffer");
  }
  char* dst = static_cast<char*>(device);
  for (int64_t begin = 0; begin < host.rows; begin += rows_per_chunk) {
    const int64_t rows = std::min(rows_per_chunk, host.rows - begin);
    char* stage = static_cast<char*>(staging_.data());
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t row = begin + r;
      if (host.type == type) {
        std::memcpy(stage + r * row_bytes,
                    static_cast<const char*>(host.data) +
                        row * host.row_stride * static_cast<int64_t>(out_element),
                    row_bytes);
        continue;
      }
      for (int64_t c = 0; c < host.cols; ++c) {
        float value = 0.0f;
        switch (host.type) {
          case ScalarType::kFloat32:
            value = host.row<float>(row)[c];
            break;
          case ScalarType::kBFloat16:
            value = BF16ToFloat(host.row<uint16_t>(row)[c]);
            break;
          case ScalarType::kFloat16:
            value = HalfToFloat(host.row<uint16_t>(row)[c]);
            break;
          default:
            return absl::InvalidArgumentError(
                absl::StrCat("cannot upload a ", runtime::ScalarName(host.type), " weight"));
        }
        if (type == ScalarType::kBFloat16) {
          reinterpret_cast<uint16_t*>(stage + r * row_bytes)[c] = FloatToBF16(value);
        } else {
          reinterpret_cast<float*>(stage + r * row_bytes)[c] = value;
        }
      }
    }
    FF_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(dst + begin * row_bytes, stage, rows * row_bytes, cudaMemcpyHostToDevice));
  }
  return absl::OkStatus();
}

std::unique_ptr<LinearWeight> CudaBackend::PrepareLinear(const Tensor& weight, const Tensor* bias) {
  std::optional<ConstTensorView> bias_view;
  if (bias != nullptr) bias_view = ConstTensorView(*bias);
  absl::StatusOr<std::unique_ptr<LinearWeight>> prepared =
      PrepareNamedLinear({"linear", weight, bias_view ? &*bias_view : nullptr});
  if (!prepared.ok()) {
    std::fprintf(stderr, "cuda backend: PrepareLinear: %s\n", prepared.status().ToString().c_str());
    std::abort();
  }
  return *std::move(prepared);
}

absl::StatusOr<std::unique_ptr<LinearWeight>> CudaBackend::PrepareNamedLinear(
    const LinearSource& source) {
  const ConstTensorView& w = source.weight;
  if (w.memory == MemoryKind::kDevice || w.rows <= 0 || w.cols <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("layer '", std::string(source.name),
                                                   "': expected a host weight, got ", Shape(w)));
  }
  auto handle = std::make_unique<CudaLinearWeight>(w.rows, w.cols);
  runtime::Allocator& device = runtime::cuda::DeviceAllocator(options_.device);
  FF_ASSIGN_OR_RETURN(handle->weight, runtime::Buffer::Allocate(device, w.rows * w.cols * 2));
  FF_RETURN_IF_ERROR(Upload(w, ScalarType::kBFloat16, handle->weight.data()));
  weight_bytes_ += w.rows * w.cols * 2;
  if (source.bias != nullptr) {
    const ConstTensorView flat(source.bias->data, source.bias->type, MemoryKind::kHost, 1,
                               source.bias->size());
    if (flat.cols != w.rows) {
      return absl::InvalidArgumentError(absl::StrCat("layer '", std::string(source.name),
                                                     "': bias has ", flat.cols, " values for ",
                                                     w.rows, " outputs"));
    }
    FF_ASSIGN_OR_RETURN(handle->bias_bf16, runtime::Buffer::Allocate(device, w.rows * 2));
    FF_ASSIGN_OR_RETURN(handle->bias_f32, runtime::Buffer::Allocate(device, w.rows * 4));
    FF_RETURN_IF_ERROR(Upload(flat, ScalarType::kBFloat16, handle->bias_bf16.data()));
    FF_RETURN_IF_ERROR(Upload(flat, ScalarType::kFloat32, handle->bias_f32.data()));
  }
  return std::unique_ptr<LinearWeight>(std::move(handle));
}

absl::StatusOr<std::unique_ptr<LinearWeight>> CudaBackend::PrepareRandomLinear(
    std::string_view name, int64_t out, int64_t in, uint64_t seed, float stddev) {
  if (out <= 0 || in <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer '", std::string(name), "': shape [", out, ", ", in, "]"));
  }
  auto handle = std::make_unique<CudaLinearWeight>(out, in);
  FF_ASSIGN_OR_RETURN(
      handle->weight,
      runtime::Buffer::Allocate(runtime::cuda::DeviceAllocator(options_.device), out * in * 2));
  FF_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  FF_RETURN_IF_ERROR(cuda::RandomFillBf16(
      {static_cast<bf16*>(handle->weight.data()), out * in, seed, stddev}, nullptr));
  FF_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  weight_bytes_ += out * in * 2;
  return std::unique_ptr<LinearWeight>(std::move(handle));
}

absl::StatusOr<std::unique_ptr<LinearWeight>> CudaBackend::PrepareQuantizedLinear(
    const QuantizedLinearSource& source) {
  FF_ASSIGN_OR_RETURN(std::unique_ptr<CudaQuantizedLinearWeight> handle,
                      UploadQuantizedLinear(source, options_.device));
  weight_bytes_ += handle->device_bytes();
  return std::unique_ptr<LinearWeight>(std::move(handle));
}

absl::StatusOr<std::unique_ptr<LinearWeight>> CudaBackend::PrepareRandomQuantizedLinear(
    std::string_view name, int64_t out, int64_t in, uint64_t seed, float stddev,
    const RandomQuantizedFormat& format) {
  FF_ASSIGN_OR_RETURN(std::unique_ptr<CudaQuantizedLinearWeight> handle,
                      RandomQuantizedLinear(name, out, in, seed, stddev, format, options_.device));
  weight_bytes_ += handle->device_bytes();
  return std::unique_ptr<LinearWeight>(std::move(handle));
}

int64_t CudaBackend::LinearScratchBytes(const LinearWeight& weight, int64_t rows) const {
  const auto* quantized = dynamic_cast<const CudaQuantizedLinearWeight*>(&weight);
  return quantized == nullptr ? 0 : QuantizedLinearScratchBytes(*quantized, rows);
}

absl::StatusOr<std::unique_ptr<WeightTensor>> CudaBackend::PrepareWeight(
    const ConstTensorView& host, WeightUse use) {
  const ScalarType type =
      use == WeightUse::kEmbeddingTable ? ScalarType::kBFloat16 : ScalarType::kFloat32;
  FF_ASSIGN_OR_RETURN(
      runtime::Buffer buffer,
      runtime::Buffer::Allocate(runtime::cuda::DeviceAllocator(options_.device),
                                std::max<int64_t>(16, host.size() * runtime::ScalarSize(type))));
  FF_RETURN_IF_ERROR(Upload(host, type, buffer.data()));
  weight_bytes_ += host.size() * static_cast<int64_t>(runtime::ScalarSize(type));
  const ConstTensorView view(buffer.data(), type, MemoryKind::kDevice, host.rows, host.cols);
  return std::make_unique<WeightTensor>(std::move(buffer), view);
}

absl::StatusOr<std::unique_ptr<ExecutionContext>> CudaBackend::CreateContext() {
  FF_ASSIGN_OR_RETURN(std::unique_ptr<CudaExecutionContext> context,
                      CudaExecutionContext::Create(options_.device));
  return std::unique_ptr<ExecutionContext>(std::move(context));
}

absl::StatusOr<std::unique_ptr<KvPool>> CudaBackend::CreateKvPool(const KvPoolShape& shape,
                                                                  int64_t num_blocks) {
  FF_RETURN_IF_ERROR(ValidateKvPoolShape(shape));
  if (shape.dtype == KvDtype::kFloat32) {
    return absl::InvalidArgumentError("the CUDA KV pool holds bf16 or INT8 keys and values");
  }
  auto pool = std::make_unique<CudaKvPool>(shape, num_blocks);
  runtime::Allocator& device = runtime::cuda::DeviceAllocator(options_.device);
  const int64_t positions = shape.num_layers * num_blocks * shape.block_size;
  const int64_t elements = positions * shape.row_size();
  const bool int8 = shape.dtype == KvDtype::kInt8;
  const int64_t bytes = elements * (int8 ? 1 : 2);
  FF_ASSIGN_OR_RETURN(pool->keys, runtime::Buffer::Allocate(device, bytes));
  FF_ASSIGN_OR_RETURN(pool->values, runtime::Buffer::Allocate(device, bytes));
  // Zeroed, so that padding rows that read unwritten slots see finite values.
  FF_CUDA_RETURN_IF_ERROR(cudaMemset(pool->keys.data(), 0, bytes));
  FF_CUDA_RETURN_IF_ERROR(cudaMemset(pool->values.data(), 0, bytes));
  if (int8) {
    const int64_t scale_bytes = positions * shape.num_kv_heads * 2;
    FF_ASSIGN_OR_RETURN(pool->key_scales, runtime::Buffer::Allocate(device, scale_bytes));
    FF_ASSIGN_OR_RETURN(pool->value_scales, runtime::Buffer::Allocate(device, scale_bytes));
    FF_CUDA_RETURN_IF_ERROR(cudaMemset(pool->key_scales.data(), 0, scale_bytes));
    FF_CUDA_RETURN_IF_ERROR(cudaMemset(pool->value_scales.data(), 0, scale_bytes));
  }
  return std::unique_ptr<KvPool>(std::move(pool));
}

absl::Status CudaBackend::Linear(ExecutionContext& context, const LinearWeight& weight,
                                 const ConstTensorView& x, const TensorView& y) {
  OpTimer timer(context, "gemm");
  FF_RETURN_IF_ERROR(Expect(x, ScalarType::kBFloat16, false, "Linear", "x"));
  if (y.memory != MemoryKind::kDevice ||
      (y.type != ScalarType::kBFloat16 && y.type != ScalarType::kFloat32)) {
    return Misuse("Linear", absl::StrCat("y must be device bf16 or f32, got ", Shape(y)));
  }
  if (x.cols != weight.in_features() || y.cols != weight.out_features() || y.rows != x.rows) {
    return Misuse("Linear",
                  absl::StrCat("x ", Shape(x), " y ", Shape(y), " for a [", weight.out_features(),
                               ", ", weight.in_features(), "] weight"));
  }
  if (x.rows == 0) return absl::OkStatus();
  if (const auto* quantized = dynamic_cast<const CudaQuantizedLinearWeight*>(&weight)) {
    CudaExecutionContext& cuda = Cuda(context);
    return RunQuantizedLinear(*quantized, x, y, cuda.arena(), cuda.stream(), &cuda.int8_gemm(),
                              cuda.split_counters());
  }
  const auto* dense = dynamic_cast<const CudaLinearWeight*>(&weight);
  if (dense == nullptr) return Misuse("Linear", "the weight was not prepared by this backend");
  const CudaLinearWeight& w = *dense;
  const bool float_out = y.type == ScalarType::kFloat32;
  cuda::Bf16GemmArgs args;
  args.m = x.rows;
  args.n = w.out_features();
  args.k = w.in_features();
  args.x = x.as<bf16>();
  args.x_stride = x.row_stride;
  args.w = static_cast<const bf16*>(w.weight.data());
  args.y = y.data;
  args.y_stride = y.row_stride;
  args.y_type = float_out ? cuda::GemmElementType::kFloat32 : cuda::GemmElementType::kBf16;
  if (w.bias_bf16.bytes() > 0) {
    args.bias = float_out ? w.bias_f32.data() : w.bias_bf16.data();
    args.bias_type = args.y_type;
  }
  CudaExecutionContext& cuda = Cuda(context);
  return cuda.gemm().Run(args, cuda.stream());
}

absl::Status CudaBackend::AddRmsNorm(ExecutionContext& context, const TensorView& residual,
                                     const ConstTensorView* delta, const WeightTensor& weight,
                                     float eps, const TensorView& out) {
  OpTimer timer(context, "norm");
  FF_RETURN_IF_ERROR(Expect(residual, ScalarType::kFloat32, true, "AddRmsNorm", "residual"));
  FF_RETURN_IF_ERROR(Expect(out, ScalarType::kBFloat16, true, "AddRmsNorm", "out"));
  if (delta != nullptr) {
    FF_RETURN_IF_ERROR(Expect(*delta, ScalarType::kBFloat16, true, "AddRmsNorm", "delta"));
  }
  if (out.rows != residual.rows || out.cols != residual.cols || weight.cols() != residual.cols) {
    return Misuse("AddRmsNorm", absl::StrCat("residual ", Shape(residual), " out ", Shape(out)));
  }
  if (residual.rows == 0) return absl::OkStatus();
  cuda::DeviceFusedAddRmsNorm args;
  args.residual = residual.as<float>();
  args.rows = residual.rows;
  args.hidden = residual.cols;
  args.delta = delta != nullptr ? delta->as<bf16>() : nullptr;
  args.weight = weight.view().as<float>();
  args.eps = eps;
  args.out = out.as<bf16>();
  return cuda::FusedAddRmsNorm(args, Cuda(context).stream());
}

absl::Status CudaBackend::AddRmsNormLogitRows(ExecutionContext& context, const TensorView& residual,
                                              const ConstTensorView* delta,
                                              const WeightTensor& weight, float eps,
                                              const TensorView& out) {
  OpTimer timer(context, "norm");
  FF_RETURN_IF_ERROR(
      Expect(residual, ScalarType::kFloat32, true, "AddRmsNormLogitRows", "residual"));
  FF_RETURN_IF_ERROR(Expect(out, ScalarType::kBFloat16, true, "AddRmsNormLogitRows", "out"));
  if (delta != nullptr) {
    FF_RETURN_IF_ERROR(Expect(*delta, ScalarType::kBFloat16, true, "AddRmsNormLogitRows", "delta"));
  }
  const int64_t logit_rows = static_cast<int64_t>(context.step().logit_rows.size());
  if (out.rows != logit_rows || out.cols != residual.cols) {
    return Misuse("AddRmsNormLogitRows",
                  absl::StrCat("out ", Shape(out), " for ", logit_rows, " logit rows"));
  }
  if (residual.rows == 0 || logit_rows == 0) return absl::OkStatus();
  cuda::DeviceFusedAddRmsNorm args;
  args.residual = residual.as<float>();
  args.rows = residual.rows;
  args.hidden = residual.cols;
  args.delta = delta != nullptr ? delta->as<bf16>() : nullptr;
  args.weight = weight.view().as<float>();
  args.eps = eps;
  args.row_index = Cuda(context).device_step().logit_rows;
  args.out_rows = logit_rows;
  args.out = out.as<bf16>();
  return cuda::FusedAddRmsNorm(args, Cuda(context).stream());
}

absl::Status CudaBackend::Embedding(ExecutionContext& context, const WeightTensor& table,
                                    const TensorView& out) {
  OpTimer timer(context, "other");
  FF_RETURN_IF_ERROR(Expect(out, ScalarType::kFloat32, true, "Embedding", "out"));
  if (out.rows != context.step().num_rows() || out.cols != table.cols()) {
    return Misuse("Embedding",
                  absl::StrCat("out ", Shape(out), " for a table ", Shape(table.view())));
  }
  if (out.rows == 0) return absl::OkStatus();
  cuda::DeviceEmbeddingLookup args;
  args.table = table.view().data;
  args.table_dtype = cuda::EmbeddingTableType::kBfloat16;
  args.table_rows = table.rows();
  args.hidden = table.cols();
  args.ids = Cuda(context).device_step().token_ids;
  args.rows = out.rows;
  args.out = out.as<float>();
  return cuda::EmbeddingLookup(args, Cuda(context).stream());
}

absl::Status CudaBackend::RotaryKvWrite(ExecutionContext& context, int64_t layer,
                                        const ConstTensorView& qkv, const WeightTensor& inv_freq,
                                        const AttentionShape& shape, const TensorView& q_out,
                                        KvPool& pool) {
  OpTimer timer(context, "attention");
  FF_RETURN_IF_ERROR(Expect(qkv, ScalarType::kBFloat16, true, "RotaryKvWrite", "qkv"));
  FF_RETURN_IF_ERROR(Expect(q_out, ScalarType::kBFloat16, true, "RotaryKvWrite", "q_out"));
  if (layer < 0 || layer >= pool.shape().num_layers || qkv.rows != context.step().num_rows()) {
    return Misuse("RotaryKvWrite", absl::StrCat("layer ", layer, " qkv ", Shape(qkv)));
  }
  if (qkv.rows == 0) return absl::OkStatus();
  const DeviceStep& step = Cuda(context).device_step();
  cuda::RotaryKvWriteParams params;
  params.qkv = qkv.as<bf16>();
  params.positions = step.positions;
  params.inv_freq = inv_freq.view().as<float>();
  params.slot_mapping = step.slots;
  params.q_out = q_out.as<bf16>();
  params.cache = Pool(pool).Layer(layer);
  params.rows = qkv.rows;
  params.num_heads = shape.num_heads;
  params.num_kv_heads = shape.num_kv_heads;
  params.head_dim = shape.head_dim;
  return cuda::RotaryKvWrite(params, Cuda(context).stream());
}

absl::Status CudaBackend::Attention(ExecutionContext& context, int64_t layer,
                                    const ConstTensorView& q, const KvPool& pool,
                                    const AttentionShape& shape, const TensorView& out) {
  OpTimer timer(context, "attention");
  FF_RETURN_IF_ERROR(Expect(q, ScalarType::kBFloat16, true, "Attention", "q"));
  FF_RETURN_IF_ERROR(Expect(out, ScalarType::kBFloat16, true, "Attention", "out"));
  if (q.rows == 0) return absl::OkStatus();
  CudaExecutionContext& cuda = Cuda(context);
  const DeviceStep& step = cuda.device_step();
  cuda::PagedAttentionParams params;
  params.q = q.as<bf16>();
  params.out = out.as<bf16>();
  params.cache = Pool(pool).Layer(layer);
  params.block_tables = step.block_tables;
  params.max_blocks_per_sequence = step.max_blocks;
  params.query_starts = step.query_starts;
  params.context_lengths = step.context_lengths;
  params.num_sequences = static_cast<int64_t>(context.step().sequences.size());
  params.num_q_rows = q.rows;
  params.num_heads = shape.num_heads;
  params.num_kv_heads = shape.num_kv_heads;
  params.head_dim = shape.head_dim;
  params.max_query_length = step.max_query_length;
  params.max_context_length = step.max_context_length;
  params.scale = shape.scale;
  params.workspace_bytes = cuda::PagedAttentionWorkspaceBytes(params);
  // The split-K partials live only while this layer's attention runs.
  const runtime::WorkspaceArena::Mark mark = cuda.arena().mark();
  if (params.workspace_bytes > 0) {
    FF_ASSIGN_OR_RETURN(params.workspace, cuda.ScratchBytes(params.workspace_bytes));
  }
  const absl::Status launched = cuda::PagedAttention(params, cuda.stream());
  cuda.arena().Release(mark);
  return launched;
}

absl::Status CudaBackend::SiluMul(ExecutionContext& context, const ConstTensorView& gate_up,
                                  const TensorView& out) {
  OpTimer timer(context, "other");
  FF_RETURN_IF_ERROR(Expect(gate_up, ScalarType::kBFloat16, false, "SiluMul", "gate_up"));
  FF_RETURN_IF_ERROR(Expect(out, ScalarType::kBFloat16, false, "SiluMul", "out"));
  if (gate_up.cols != 2 * out.cols || gate_up.rows != out.rows) {
    return Misuse("SiluMul", absl::StrCat("gate_up ", Shape(gate_up), " out ", Shape(out)));
  }
  if (out.rows == 0) return absl::OkStatus();
  cuda::DeviceSiluMul args;
  args.gate_up = gate_up.as<bf16>();
  args.gate_up_row_stride = gate_up.row_stride;
  args.rows = out.rows;
  args.inter = out.cols;
  args.out = out.as<bf16>();
  args.out_row_stride = out.row_stride;
  return cuda::SiluMul(args, Cuda(context).stream());
}

absl::Status CudaBackend::SparseMoe(ExecutionContext& context, const ConstTensorView& x,
                                    const ConstTensorView& router_logits,
                                    std::span<const ExpertWeights> experts, int64_t top_k,
                                    const TensorView& out) {
  OpTimer timer(context, "moe");
  FF_RETURN_IF_ERROR(Expect(x, ScalarType::kBFloat16, true, "SparseMoe", "x"));
  FF_RETURN_IF_ERROR(
      Expect(router_logits, ScalarType::kFloat32, true, "SparseMoe", "router_logits"));
  FF_RETURN_IF_ERROR(Expect(out, ScalarType::kBFloat16, true, "SparseMoe", "out"));
  const int64_t rows = x.rows;
  const int64_t num_experts = static_cast<int64_t>(experts.size());
  if (rows == 0) return absl::OkStatus();
  if (num_experts == 0 || router_logits.cols != num_experts || router_logits.rows != rows ||
      out.rows != rows || out.cols != x.cols) {
    return Misuse("SparseMoe", absl::StrCat("x ", Shape(x), " router ", Shape(router_logits)));
  }
  const int64_t hidden = x.cols;
  const int64_t inter = experts[0].gate->out_features();
  CudaExecutionContext& cuda = Cuda(context);
  const cudaStream_t stream = cuda.stream();
  // The experts' weight pointers, copied to the device once per layer.
  const ExpertPointers* pointers = nullptr;
  {
    std::lock_guard<std::mutex> lock(expert_mutex);
    std::vector<const void*> gate(num_experts), up(num_experts), down(num_experts);
    for (int64_t e = 0; e < num_experts; ++e) {
      const auto* g = dynamic_cast<const CudaLinearWeight*>(experts[e].gate);
      const auto* u = dynamic_cast<const CudaLinearWeight*>(experts[e].up);
      const auto* d = dynamic_cast<const CudaLinearWeight*>(experts[e].down);
      if (g == nullptr || u == nullptr || d == nullptr) {
        return Misuse("SparseMoe",
                      "experts must be bf16 layers: the grouped GEMM has no quantized form yet");
      }
      gate[e] = g->weight.data();
      up[e] = u->weight.data();
      down[e] = d->weight.data();
    }
    std::vector<const void*> host = gate;
    host.insert(host.end(), up.begin(), up.end());
    host.insert(host.end(), down.begin(), down.end());
    auto [it, inserted] = ExpertTable().try_emplace(experts.data());
    if (inserted || it->second.host != host) {
      it->second.host = std::move(host);
      runtime::Allocator& device = runtime::cuda::DeviceAllocator(options_.device);
      const size_t bytes = num_experts * sizeof(void*);
      FF_ASSIGN_OR_RETURN(it->second.gate, runtime::Buffer::Allocate(device, bytes));
      FF_ASSIGN_OR_RETURN(it->second.up, runtime::Buffer::Allocate(device, bytes));
      FF_ASSIGN_OR_RETURN(it->second.down, runtime::Buffer::Allocate(device, bytes));
      FF_CUDA_RETURN_IF_ERROR(
          cudaMemcpy(it->second.gate.data(), gate.data(), bytes, cudaMemcpyHostToDevice));
      FF_CUDA_RETURN_IF_ERROR(
          cudaMemcpy(it->second.up.data(), up.data(), bytes, cudaMemcpyHostToDevice));
      FF_CUDA_RETURN_IF_ERROR(
          cudaMemcpy(it->second.down.data(), down.data(), bytes, cudaMemcpyHostToDevice));
    }
    pointers = &it->second;
  }
  const int64_t permuted = rows * top_k;
  // The permutation buffers live only while this layer's MoE block runs (every layer reuses
  // them: stream order keeps the next layer's kernels behind this one's).
  const runtime::WorkspaceArena::Mark mark = cuda.arena().mark();
  struct ReleaseAtExit {
    runtime::WorkspaceArena& arena;
    runtime::WorkspaceArena::Mark mark;
    ~ReleaseAtExit() { arena.Release(mark); }
  } release{cuda.arena(), mark};
  FF_ASSIGN_OR_RETURN(void* ids, cuda.ScratchBytes(permuted * 4));
  FF_ASSIGN_OR_RETURN(void* weights, cuda.ScratchBytes(permuted * 4));
  FF_ASSIGN_OR_RETURN(void* offsets, cuda.ScratchBytes((num_experts + 1) * 4));
  FF_ASSIGN_OR_RETURN(void* source_rows, cuda.ScratchBytes(permuted * 4));
  FF_ASSIGN_OR_RETURN(void* inverse, cuda.ScratchBytes(permuted * 4));
  FF_ASSIGN_OR_RETURN(TensorView xp, cuda.Scratch(ScalarType::kBFloat16, permuted, hidden));
  FF_ASSIGN_OR_RETURN(TensorView gate_up, cuda.Scratch(ScalarType::kBFloat16, permuted, 2 * inter));
  FF_ASSIGN_OR_RETURN(TensorView activated, cuda.Scratch(ScalarType::kBFloat16, permuted, inter));
  FF_ASSIGN_OR_RETURN(TensorView yp, cuda.Scratch(ScalarType::kBFloat16, permuted, hidden));

  cuda::MoeRoutingArgs routing;
  routing.router_logits = router_logits.as<float>();
  routing.rows = rows;
  routing.num_experts = num_experts;
  routing.top_k = top_k;
  routing.expert_ids = static_cast<int32_t*>(ids);
  routing.expert_weights = static_cast<float*>(weights);
  FF_RETURN_IF_ERROR(cuda::TopKSoftmaxRouting(routing, stream));
  cuda::MoePermuteArgs permute;
  permute.expert_ids = static_cast<int32_t*>(ids);
  permute.rows = rows;
  permute.top_k = top_k;
  permute.num_experts = num_experts;
  permute.expert_offsets = static_cast<int32_t*>(offsets);
  permute.permuted_source_row = static_cast<int32_t*>(source_rows);
  permute.inverse_permutation = static_cast<int32_t*>(inverse);
  FF_RETURN_IF_ERROR(cuda::ComputeMoePermutation(permute, stream));
  cuda::MoeGatherArgs gather;
  gather.x = x.as<bf16>();
  gather.source_rows = rows;
  gather.hidden = hidden;
  gather.permuted_source_row = static_cast<int32_t*>(source_rows);
  gather.permuted_rows = permuted;
  gather.xp = xp.as<bf16>();
  FF_RETURN_IF_ERROR(cuda::GatherPermutedRows(gather, stream));
  auto grouped = [&](const runtime::Buffer& table, int64_t n, int64_t k, const bf16* in, void* y,
                     int64_t y_stride) {
    cuda::GroupedGemmArgs args;
    args.num_experts = num_experts;
    args.total_rows = permuted;
    args.max_rows_per_expert = rows;
    args.n = n;
    args.k = k;
    args.expert_offsets = static_cast<int32_t*>(offsets);
    args.xp = in;
    args.weight_pointers = static_cast<const bf16* const*>(table.data());
    args.yp = y;
    args.y_row_stride = y_stride;
    return cuda::GroupedGemm(args, stream);
  };
  // gate and up side by side in one [permuted, 2 * inter] matrix, as SiluMul reads them.
  FF_RETURN_IF_ERROR(
      grouped(pointers->gate, inter, hidden, xp.as<bf16>(), gate_up.data, 2 * inter));
  FF_RETURN_IF_ERROR(
      grouped(pointers->up, inter, hidden, xp.as<bf16>(), gate_up.as<bf16>() + inter, 2 * inter));
  cuda::DeviceSiluMul silu;  // the kernel itself: its time belongs to "moe"
  silu.gate_up = gate_up.as<bf16>();
  silu.rows = permuted;
  silu.inter = inter;
  silu.out = activated.as<bf16>();
  FF_RETURN_IF_ERROR(cuda::SiluMul(silu, stream));
  FF_RETURN_IF_ERROR(grouped(pointers->down, hidden, inter, activated.as<bf16>(), yp.data, hidden));
  cuda::MoeUnpermuteArgs unpermute;
  unpermute.yp = yp.data;
  unpermute.rows = rows;
  unpermute.top_k = top_k;
  unpermute.hidden = hidden;
  unpermute.expert_ids = static_cast<int32_t*>(ids);
  unpermute.expert_weights = static_cast<float*>(weights);
  unpermute.inverse_permutation = static_cast<int32_t*>(inverse);
  unpermute.out = out.data;
  return cuda::UnpermuteMoeOutput(unpermute, stream);
}

absl::Status CudaBackend::CopyToHost(ExecutionContext& context, const ConstTensorView& from,
                                     std::span<float> to) {
  FF_RETURN_IF_ERROR(Expect(from, ScalarType::kFloat32, false, "CopyToHost", "from"));
  if (static_cast<int64_t>(to.size()) != from.size()) return Misuse("CopyToHost", "sizes differ");
  if (from.size() == 0) return absl::OkStatus();
  CudaExecutionContext& cuda = Cuda(context);
  FF_CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(to.data(), from.cols * 4, from.data,
                                            from.row_stride * 4, from.cols * 4, from.rows,
                                            cudaMemcpyDeviceToHost, cuda.stream()));
  return cuda.Synchronize();
}

absl::Status CudaBackend::CopyFromHost(ExecutionContext& context, std::span<const float> from,
                                       const TensorView& to) {
  FF_RETURN_IF_ERROR(Expect(to, ScalarType::kFloat32, false, "CopyFromHost", "to"));
  if (static_cast<int64_t>(from.size()) != to.size()) return Misuse("CopyFromHost", "sizes differ");
  if (to.size() == 0) return absl::OkStatus();
  CudaExecutionContext& cuda = Cuda(context);
  FF_CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(to.data, to.row_stride * 4, from.data(), to.cols * 4,
                                            to.cols * 4, to.rows, cudaMemcpyHostToDevice,
                                            cuda.stream()));
  return cuda.Synchronize();
}

namespace {

// Segments of one staging area (pinned host and device alike), each at a 16-byte aligned offset.
class StagingLayout {
 public:
  size_t Add(size_t bytes) {
    const size_t offset = (bytes_ + 15) / 16 * 16;
    bytes_ = offset + bytes;
    return offset;
  }
  size_t bytes() const { return bytes_; }

 private:
  size_t bytes_ = 0;
};

static_assert(sizeof(DevicePenaltyEntry) == sizeof(cuda::LogitPenaltyEntry) &&
              offsetof(DevicePenaltyEntry, token) == offsetof(cuda::LogitPenaltyEntry, token) &&
              offsetof(DevicePenaltyEntry, completion_count) ==
                  offsetof(cuda::LogitPenaltyEntry, completion_count) &&
              offsetof(DevicePenaltyEntry, flags) == offsetof(cuda::LogitPenaltyEntry, flags) &&
              DevicePenaltyEntry::kInPrompt == cuda::LogitPenaltyEntry::kInPrompt &&
              DevicePenaltyEntry::kMasked == cuda::LogitPenaltyEntry::kMasked &&
              kMaxDeviceTopLogprobs == cuda::kMaxTopLogprobs);

template <typename T>
T* At(char* base, size_t offset) {
  return reinterpret_cast<T*>(base + offset);
}

}  // namespace

// One step's sampling: [penalties on copies of the rows that have them] -> the draw ->
// [top logprobs of the rows that ask] -> ids and small logprob arrays back. Every per-row input
// goes up in one host-to-device copy from pinned memory and every output comes back in one.
absl::Status CudaBackend::SampleTokens(ExecutionContext& context, const ConstTensorView& logits,
                                       std::span<const DeviceSamplingParams> params,
                                       std::span<int32_t> tokens, std::span<float> logprobs,
                                       std::span<DeviceTopLogprob> top_logprobs) {
  OpTimer timer(context, "sampling");
  FF_RETURN_IF_ERROR(Expect(logits, ScalarType::kFloat32, false, "SampleTokens", "logits"));
  const int64_t rows = logits.rows;
  const int64_t vocab = logits.cols;
  if (static_cast<int64_t>(params.size()) != rows || static_cast<int64_t>(tokens.size()) != rows ||
      (!logprobs.empty() && static_cast<int64_t>(logprobs.size()) != rows)) {
    return Misuse("SampleTokens", "one params, token and logprob entry per logits row");
  }
  if (!top_logprobs.empty() &&
      static_cast<int64_t>(top_logprobs.size()) != rows * kMaxDeviceTopLogprobs) {
    return Misuse("SampleTokens", "top_logprobs holds kMaxDeviceTopLogprobs entries per row");
  }
  if (rows == 0) return absl::OkStatus();
  // The rows drawn from a penalised copy, and the rows that report top logprobs.
  std::vector<int32_t> processed, listed;
  int64_t entries = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (!params[r].penalties.empty()) {
      processed.push_back(static_cast<int32_t>(r));
      entries += static_cast<int64_t>(params[r].penalties.size());
    }
    if (params[r].top_logprobs >= 0) {
      if (top_logprobs.empty() || params[r].top_logprobs > kMaxDeviceTopLogprobs) {
        return Misuse("SampleTokens",
                      "top_logprobs asked beyond kMaxDeviceTopLogprobs or without an output");
      }
      listed.push_back(static_cast<int32_t>(r));
    }
  }
  if (entries > std::numeric_limits<int32_t>::max()) {
    return Misuse("SampleTokens", "too many penalty entries");
  }
  const int64_t num_processed = static_cast<int64_t>(processed.size());
  const int64_t num_listed = static_cast<int64_t>(listed.size());
  StagingLayout layout;
  const size_t seeds_at = layout.Add(rows * 8), steps_at = layout.Add(rows * 8);
  const size_t temperature_at = layout.Add(rows * 4), top_p_at = layout.Add(rows * 4);
  const size_t top_k_at = layout.Add(rows * 4), processed_row_at = layout.Add(rows * 4);
  const size_t source_at = layout.Add(num_processed * 4);
  const size_t repetition_at = layout.Add(num_processed * 4);
  const size_t frequency_at = layout.Add(num_processed * 4);
  const size_t presence_at = layout.Add(num_processed * 4);
  const size_t offsets_at = layout.Add((num_processed + 1) * 4);
  const size_t entries_at = layout.Add(entries * sizeof(cuda::LogitPenaltyEntry));
  const size_t listed_at = layout.Add(num_listed * 4), count_at = layout.Add(num_listed * 4);
  const size_t inputs = layout.bytes();
  const size_t tokens_at = layout.Add(rows * 4), logprobs_at = layout.Add(rows * 4);
  const size_t chosen_at = layout.Add(num_listed * 4);
  const size_t top_ids_at = layout.Add(num_listed * kMaxDeviceTopLogprobs * 4);
  const size_t top_values_at = layout.Add(num_listed * kMaxDeviceTopLogprobs * 4);
  const size_t outputs_at = tokens_at;
  CudaExecutionContext& cuda = Cuda(context);
  FF_ASSIGN_OR_RETURN(void* pinned_bytes, cuda.PinnedScratch(layout.bytes()));
  FF_ASSIGN_OR_RETURN(void* device_bytes, cuda.ScratchBytes(layout.bytes()));
  char* const pinned = static_cast<char*>(pinned_bytes);
  char* const device = static_cast<char*>(device_bytes);
  uint64_t* const seeds = At<uint64_t>(pinned, seeds_at);
  uint64_t* const steps = At<uint64_t>(pinned, steps_at);
  float* const temperatures = At<float>(pinned, temperature_at);
  float* const top_p = At<float>(pinned, top_p_at);
  int32_t* const top_k = At<int32_t>(pinned, top_k_at);
  int32_t* const processed_row = At<int32_t>(pinned, processed_row_at);
  for (int64_t r = 0; r < rows; ++r) {
    seeds[r] = params[r].seed;
    steps[r] = params[r].step;
    temperatures[r] = params[r].temperature;
    top_p[r] = params[r].top_p;
    top_k[r] = params[r].top_k;
    processed_row[r] = -1;
  }
  int32_t* const offsets = At<int32_t>(pinned, offsets_at);
  offsets[0] = 0;
  for (int64_t j = 0; j < num_processed; ++j) {
    const DeviceSamplingParams& p = params[processed[j]];
    processed_row[processed[j]] = static_cast<int32_t>(j);
    At<int32_t>(pinned, source_at)[j] = processed[j];
    At<float>(pinned, repetition_at)[j] = p.repetition_penalty;
    At<float>(pinned, frequency_at)[j] = p.frequency_penalty;
    At<float>(pinned, presence_at)[j] = p.presence_penalty;
    std::memcpy(pinned + entries_at + offsets[j] * sizeof(cuda::LogitPenaltyEntry),
                p.penalties.data(), p.penalties.size() * sizeof(DevicePenaltyEntry));
    offsets[j + 1] = offsets[j] + static_cast<int32_t>(p.penalties.size());
  }
  for (int64_t j = 0; j < num_listed; ++j) {
    At<int32_t>(pinned, listed_at)[j] = listed[j];
    At<int32_t>(pinned, count_at)[j] = params[listed[j]].top_logprobs;
  }
  FF_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(device, pinned, inputs, cudaMemcpyHostToDevice, cuda.stream()));
  float* processed_logits = nullptr;
  if (num_processed > 0) {
    FF_ASSIGN_OR_RETURN(void* scratch,
                        cuda.ScratchBytes(static_cast<size_t>(num_processed * vocab) * 4));
    processed_logits = static_cast<float*>(scratch);
    cuda::LogitPenalties penalties;
    penalties.logits = logits.as<float>();
    penalties.vocab = vocab;
    penalties.logits_row_stride = logits.row_stride;
    penalties.rows = num_processed;
    penalties.source_row = At<int32_t>(device, source_at);
    penalties.repetition_penalty = At<float>(device, repetition_at);
    penalties.frequency_penalty = At<float>(device, frequency_at);
    penalties.presence_penalty = At<float>(device, presence_at);
    penalties.entry_offsets = At<int32_t>(device, offsets_at);
    penalties.entries = At<cuda::LogitPenaltyEntry>(device, entries_at);
    penalties.processed = processed_logits;
    FF_RETURN_IF_ERROR(cuda::ApplyLogitPenalties(penalties, cuda.stream()));
  }
  int32_t* const device_tokens = At<int32_t>(device, tokens_at);
  cuda::DeviceSampling args;
  args.logits = logits.as<float>();
  args.rows = rows;
  args.vocab = vocab;
  args.logits_row_stride = logits.row_stride;
  args.temperature = At<float>(device, temperature_at);
  args.top_k = At<int32_t>(device, top_k_at);
  args.top_p = At<float>(device, top_p_at);
  args.seed = At<uint64_t>(device, seeds_at);
  args.step = At<uint64_t>(device, steps_at);
  args.tokens = device_tokens;
  args.logprobs = logprobs.empty() ? nullptr : At<float>(device, logprobs_at);
  if (num_processed > 0) {
    args.processed_logits = processed_logits;
    args.processed_row = At<int32_t>(device, processed_row_at);
  }
  FF_RETURN_IF_ERROR(cuda::SampleTokens(args, cuda.stream()));
  if (num_listed > 0) {
    cuda::TopLogprobs top;
    top.logits = logits.as<float>();
    top.vocab = vocab;
    top.logits_row_stride = logits.row_stride;
    top.rows = num_listed;
    top.source_row = At<int32_t>(device, listed_at);
    top.count = At<int32_t>(device, count_at);
    top.tokens = device_tokens;
    top.chosen_logprob = At<float>(device, chosen_at);
    top.top_tokens = At<int32_t>(device, top_ids_at);
    top.top_logprobs = At<float>(device, top_values_at);
    FF_RETURN_IF_ERROR(cuda::ComputeTopLogprobs(top, cuda.stream()));
  }
  FF_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(pinned + outputs_at, device + outputs_at,
                                          layout.bytes() - outputs_at, cudaMemcpyDeviceToHost,
                                          cuda.stream()));
  FF_RETURN_IF_ERROR(cuda.Synchronize());
  const int32_t* out_tokens = At<int32_t>(pinned, tokens_at);
  std::copy(out_tokens, out_tokens + rows, tokens.begin());
  if (!logprobs.empty()) {
    const float* out_logprobs = At<float>(pinned, logprobs_at);
    std::copy(out_logprobs, out_logprobs + rows, logprobs.begin());
  }
  if (!top_logprobs.empty()) {
    std::fill(top_logprobs.begin(), top_logprobs.end(), DeviceTopLogprob{});
    const int32_t* ids = At<int32_t>(pinned, top_ids_at);
    const float* values = At<float>(pinned, top_values_at);
    for (int64_t j = 0; j < num_listed; ++j) {
      for (int s = 0; s < kMaxDeviceTopLogprobs; ++s) {
        top_logprobs[listed[j] * kMaxDeviceTopLogprobs + s] = {
            ids[j * kMaxDeviceTopLogprobs + s], values[j * kMaxDeviceTopLogprobs + s]};
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::kernels::cuda_backend
