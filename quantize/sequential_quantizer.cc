#include "quantize/sequential_quantizer.h"

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "common/status_macros.h"
#include "common/strict_json.h"
#include "quant/expert_calibration_fallback.h"
#include "quant/float_linear_filter.h"
#include "quant/mapped_pages.h"
#include "quant/phase_timer.h"
#include "quant/quantized_backend.h"
#include "quant/quantized_checkpoint_manifest.h"
#include "quant/sharded_tensor_writer.h"
#include "quantize/decoder_layer_window.h"
#include "worker/quantized/quantized_checkpoint.h"

namespace flatfleet::quant {
namespace {

namespace fs = std::filesystem;

constexpr char kStateFile[] = "state.json";
constexpr char kHiddenFile[] = "hidden.f32";
constexpr char kOutputDir[] = "output";
constexpr char kIndexFile[] = "model.safetensors.index.json";

int64_t PeakRssBytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

absl::StatusOr<std::string> ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Written to a temporary name and renamed: the old file or the new one, never half of one.
absl::Status WriteAtomically(const fs::path& path, std::span<const std::byte> bytes) {
  const fs::path temporary = path.string() + ".tmp";
  std::FILE* file = std::fopen(temporary.c_str(), "wb");
  if (file == nullptr)
    return absl::InternalError(absl::StrCat("cannot create ", temporary.string()));
  bool ok = bytes.empty() || std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size();
  ok = ok && std::fflush(file) == 0 && fsync(fileno(file)) == 0;
  ok = std::fclose(file) == 0 && ok;
  if (!ok) return absl::InternalError(absl::StrCat("cannot write ", temporary.string()));
  std::error_code error;
  fs::rename(temporary, path, error);
  if (error) return absl::InternalError(absl::StrCat("cannot rename ", temporary.string()));
  return absl::OkStatus();
}

absl::Status WriteTextAtomically(const fs::path& path, const std::string& text) {
  return WriteAtomically(path, std::as_bytes(std::span<const char>(text)));
}

// The hidden states of the calibration tokens at the embedding: the table's rows of their ids
// (read row by row; the rest of the table is never touched).
absl::StatusOr<std::vector<float>> EmbeddingRows(const WeightStore& store,
                                                 const ModelConfig& config,
                                                 const CalibrationData& calibration) {
  FF_ASSIGN_OR_RETURN(const TensorInfo* table, store.Get("model.embed_tokens.weight"));
  if (table->shape != std::vector<int64_t>{config.vocab_size, config.hidden_size}) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: model.embed_tokens.weight is not [%d, %d]", table->file,
                        config.vocab_size, config.hidden_size));
  }
  std::vector<float> hidden;
  hidden.reserve(calibration.tokens() * config.hidden_size);
  for (const std::vector<int32_t>& sequence : calibration.sequences) {
    for (int32_t id : sequence) {
      if (id < 0 || id >= config.vocab_size) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "calibration token id %d is outside the vocabulary [0, %d)", id, config.vocab_size));
      }
      FF_ASSIGN_OR_RETURN(Tensor row, ToFloat32Rows(*table, id, id + 1));
      hidden.insert(hidden.end(), row.vector().begin(), row.vector().end());
    }
  }
  ReleaseMappedPages(table->data);
  return hidden;
}

// Sequences grouped into forwards of at most `batch_tokens` tokens (at least one sequence).
std::vector<std::pair<size_t, size_t>> Batches(const CalibrationData& calibration,
                                               int64_t batch_tokens) {
  std::vector<std::pair<size_t, size_t>> batches;
  size_t begin = 0;
  int64_t tokens = 0;
  for (size_t i = 0; i < calibration.sequences.size(); ++i) {
    const int64_t length = static_cast<int64_t>(calibration.sequences[i].size());
    if (i > begin && tokens + length > batch_tokens) {
      batches.push_back({begin, i});
      begin = i;
      tokens = 0;
    }
    tokens += length;
  }
  if (begin < calibration.sequences.size())
    batches.push_back({begin, calibration.sequences.size()});
  return batches;
}

// Runs every calibration sequence through the one-layer window model (token ids are the
// positions' rows of its embedding table, i.e. of the hidden states).
absl::Status RunWindow(const engine::LlamaModel& model, const CalibrationData& calibration,
                       int64_t batch_tokens) {
  std::vector<int64_t> offsets(calibration.sequences.size() + 1, 0);
  int64_t max_length = 0;
  for (size_t i = 0; i < calibration.sequences.size(); ++i) {
    const int64_t length = static_cast<int64_t>(calibration.sequences[i].size());
    offsets[i + 1] = offsets[i] + length;
    max_length = std::max(max_length, length);
  }
  for (const auto& [begin, end] : Batches(calibration, batch_tokens)) {
    FF_ASSIGN_OR_RETURN(std::unique_ptr<engine::KvCache> cache,
                        model.CreateKvCache(max_length, static_cast<int64_t>(end - begin)));
    std::vector<std::vector<int32_t>> ids(end - begin);
    std::vector<engine::SequenceChunk> chunks;
    for (size_t s = begin; s < end; ++s) {
      std::vector<int32_t>& row = ids[s - begin];
      for (int64_t p = offsets[s]; p < offsets[s + 1]; ++p) row.push_back(static_cast<int32_t>(p));
      FF_ASSIGN_OR_RETURN(engine::SequenceId sequence, cache->AddSequence());
      chunks.push_back({sequence, row, /*all_logits=*/false});
    }
    FF_RETURN_IF_ERROR(model.Forward(chunks, *cache).status());
  }
  return absl::OkStatus();
}

engine::LinearLayerRequest RenamedRequest(engine::LinearLayerRequest request, int64_t layer) {
  request.name = RenameLayer(request.name, 0, layer);
  for (engine::LinearLayerRequest::Part& part : request.parts) {
    part.prefix = RenameLayer(part.prefix, 0, layer);
  }
  return request;
}

// What a resumable run saves after each layer.
struct RunState {
  int64_t layers_done = 0;
  std::vector<StoredLinearLayer> layers;
  std::vector<std::string> float_layers;
  std::vector<LayerExpertCalibration> expert_calibration;
  nlohmann::json writer;
};

std::string ManifestOf(const QuantRecipe& recipe, const SequentialQuantizeOptions& options,
                       std::vector<std::string> tensor_files, const RunState& state) {
  QuantizedCheckpointManifest manifest;
  manifest.recipe = recipe;
  manifest.source_model = fs::absolute(options.source_dir).lexically_normal().string();
  manifest.calibration = options.calibration_info;
  manifest.calibration["layer_by_layer"] = true;
  manifest.calibration["layer_inputs"] =
      options.calibration_inputs == CalibrationInputs::kFloatPrefix ? "float" : "quantized";
  manifest.tensor_files = std::move(tensor_files);
  manifest.layers = state.layers;
  manifest.float_layers = state.float_layers;
  manifest.expert_calibration = state.expert_calibration;
  return SerializeQuantizedCheckpointManifest(manifest);
}

absl::Status SaveState(const fs::path& work, const QuantRecipe& recipe,
                       const SequentialQuantizeOptions& options, const RunState& state,
                       std::span<const float> hidden) {
  FF_RETURN_IF_ERROR(WriteAtomically(work / kHiddenFile, std::as_bytes(hidden)));
  const nlohmann::json json = {{"layers_done", state.layers_done},
                               {"hidden_values", hidden.size()},
                               {"manifest", nlohmann::json::parse(ManifestOf(
                                                recipe, options, {"pending.safetensors"}, state))},
                               {"writer", state.writer}};
  return WriteTextAtomically(work / kStateFile, json.dump(1));
}

// The state of a previous run of the same recipe, source and calibration, or nullopt.
absl::StatusOr<std::optional<RunState>> LoadState(const fs::path& work, const QuantRecipe& recipe,
                                                  const SequentialQuantizeOptions& options,
                                                  std::vector<float>& hidden) {
  std::error_code error;
  if (!fs::exists(work / kStateFile, error)) return std::optional<RunState>();
  FF_ASSIGN_OR_RETURN(std::string text, ReadText(work / kStateFile));
  FF_ASSIGN_OR_RETURN(nlohmann::json json, ParseStrictJson(text, (work / kStateFile).string()));
  RunState state;
  try {
    state.layers_done = json.at("layers_done").get<int64_t>();
    state.writer = json.at("writer");
    FF_ASSIGN_OR_RETURN(QuantizedCheckpointManifest manifest,
                        ParseQuantizedCheckpointManifest(json.at("manifest").dump()));
    const std::string expected = ManifestOf(recipe, options, {"pending.safetensors"}, RunState());
    const nlohmann::json want = nlohmann::json::parse(expected);
    const nlohmann::json have = json.at("manifest");
    for (const char* field : {"recipe", "source_model", "calibration"}) {
      if (want.at(field) != have.at(field)) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "--resume: %s was started with another %s; remove it or run without --resume",
            work.string(), field));
      }
    }
    state.layers = std::move(manifest.layers);
    state.float_layers = std::move(manifest.float_layers);
    state.expert_calibration = std::move(manifest.expert_calibration);
    const size_t values = json.at("hidden_values").get<size_t>();
    FF_ASSIGN_OR_RETURN(std::string bytes, ReadText(work / kHiddenFile));
    if (bytes.size() != values * sizeof(float)) {
      return absl::DataLossError(absl::StrFormat("%s has %d bytes, the state says %d floats",
                                                 (work / kHiddenFile).string(), bytes.size(),
                                                 values));
    }
    hidden.resize(values);
    std::memcpy(hidden.data(), bytes.data(), bytes.size());
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat((work / kStateFile).string(), ": ", e.what()));
  }
  return std::optional<RunState>(std::move(state));
}

// The window's experts: the calibration rows each one's linears recorded (the tokens routed to
// it) and the method they chose. The three linears of an expert see the same rows.
absl::Status RecordExperts(const QuantRecipe& recipe, const engine::LlamaModel& model,
                           int64_t layer, RunState& state) {
  LayerExpertCalibration record;
  record.layer = layer;
  for (const engine::NamedLinear& linear : model.linears()) {
    const auto* handle = dynamic_cast<const QuantizedCpuLinearWeight*>(linear.handle);
    if (handle == nullptr || !handle->is_expert()) continue;
    const std::optional<ExpertLinearName> name = ParseExpertLinearName(handle->name());
    if (!name.has_value()) return absl::InternalError("an expert linear without an expert name");
    const size_t e = static_cast<size_t>(name->expert);
    ExpertCalibration unseen;
    unseen.tokens = -1;  // no linear of it met yet
    if (record.experts.size() <= e) record.experts.resize(e + 1, unseen);
    ExpertCalibration& expert = record.experts[e];
    if (expert.tokens >= 0 && expert.tokens != handle->quantized_rows()) {
      return absl::InternalError(absl::StrFormat(
          "layer %s: %d calibration rows, but %d for the expert's other linears",
          RenameLayer(handle->name(), 0, layer), handle->quantized_rows(), expert.tokens));
    }
    expert.expert = name->expert;
    expert.tokens = handle->quantized_rows();
    expert.methods[name->projection] = ExpertQuantMethodName(recipe, handle->expert_method());
  }
  if (record.experts.empty()) return absl::OkStatus();
  for (size_t e = 0; e < record.experts.size(); ++e) {
    if (record.experts[e].methods.size() != 3) {
      return absl::InternalError(
          absl::StrFormat("layer %d: expert %d has %d of its linears w1, w2, w3", layer, e,
                          record.experts[e].methods.size()));
    }
  }
  state.expert_calibration.push_back(std::move(record));
  return absl::OkStatus();
}

// The progress line's summary of one layer's experts.
void SummarizeExperts(const RunState& state, int64_t layer, LayerProgress& progress) {
  for (const LayerExpertCalibration& record : state.expert_calibration) {
    if (record.layer != layer || record.experts.empty()) continue;
    std::vector<int64_t> tokens;
    for (const ExpertCalibration& expert : record.experts) {
      tokens.push_back(expert.tokens);
      for (const auto& [projection, method] : expert.methods) {
        ++progress.expert_linears;
        progress.expert_linears_rtn += method == kExpertFallbackMethodName;
        progress.expert_linears_damped += method == kExpertDampedGptqMethodName;
      }
    }
    std::sort(tokens.begin(), tokens.end());
    progress.experts = static_cast<int64_t>(tokens.size());
    progress.expert_tokens_min = tokens.front();
    progress.expert_tokens_median = tokens[(tokens.size() - 1) / 2];
    progress.expert_tokens_max = tokens.back();
  }
}

// Quantizes decoder layer `layer` on `hidden` (replaced by the layer's quantized output) and
// streams its tensors to `writer`.
absl::Status QuantizeLayer(const QuantRecipe& recipe, const CalibrationData& calibration,
                           const SequentialQuantizeOptions& options, const ModelConfig& config,
                           const WeightStore& store, const WeightStore& checkpoint_store,
                           const engine::WeightSource& checkpoint, int64_t layer,
                           std::vector<float>& hidden, ShardedTensorWriter& writer,
                           RunState& state) {
  const int64_t positions = static_cast<int64_t>(hidden.size()) / config.hidden_size;
  std::vector<float> output;
  {
    std::optional<ScopedPhase> read(QuantizePhase::kRead);
    DecoderLayerWindowSource window(checkpoint, layer, hidden, config.hidden_size);
    FF_ASSIGN_OR_RETURN(std::unique_ptr<QuantizedCpuBackend> backend,
                        QuantizedCpuBackend::Create(recipe, KeepFloatByName()));
    backend->set_quantize_at_prepare(false);
    engine::ModelOptions model_options;
    model_options.bf16_rotary_frequencies = options.model_options.bf16_rotary_frequencies;
    FF_ASSIGN_OR_RETURN(std::unique_ptr<engine::LlamaModel> model,
                        engine::BuildLlamaModel(DecoderLayerWindowConfig(config, positions), window,
                                                *backend, model_options));
    // The model holds its own float32 copies now: the mapped bf16 pages can go.
    const std::string prefix = absl::StrCat("model.layers.", layer, ".");
    for (const std::string& name : store.TensorNames()) {
      // The window read them through the checkpoint's own mapping: release them there (the
      // pages stayed resident, F/2 more RSS per layer, when only `store`'s were released).
      if (name.starts_with(prefix)) ReleaseMappedPages(checkpoint_store.Find(name)->data);
    }
    read.reset();
    const bool float_prefix = options.calibration_inputs == CalibrationInputs::kFloatPrefix;
    output.reserve(hidden.size());
    backend->set_mode(LinearMode::kCalibrate);  // float outputs while recording statistics
    if (float_prefix) backend->set_residual_capture(&output);
    {
      const ScopedPhase phase(QuantizePhase::kCalibrateForward);  // less its statistics
      FF_RETURN_IF_ERROR(RunWindow(*model, calibration, options.batch_tokens));
    }
    backend->set_residual_capture(nullptr);
    // Quantize the linears one at a time, each dropping its float copies right after (errors
    // name the layer). The solvers time themselves (GPTQ, RTN, FlatQuant); the rest is
    // kQuantizeOther.
    backend->set_mode(LinearMode::kQuantized);
    std::optional<ScopedPhase> quantize(QuantizePhase::kQuantizeOther);
    for (const engine::NamedLinear& linear : model->linears()) {
      auto* handle = dynamic_cast<QuantizedCpuLinearWeight*>(
          const_cast<kernels::LinearWeight*>(linear.handle));
      if (handle == nullptr || handle->kept_float()) continue;
      if (absl::Status released = handle->ReleaseFloat(recipe); !released.ok()) {
        return absl::Status(released.code(),
                            absl::StrCat("layer ", RenameLayer(linear.request.name, 0, layer), ": ",
                                         released.message()));
      }
    }
    FF_RETURN_IF_ERROR(RecordExperts(recipe, *model, layer, state));
    quantize.reset();
    if (!float_prefix) {  // the next layer's inputs come out of this quantized layer
      const ScopedPhase phase(QuantizePhase::kQuantizedForward);
      backend->set_residual_capture(&output);
      FF_RETURN_IF_ERROR(RunWindow(*model, calibration, options.batch_tokens));
      backend->set_residual_capture(nullptr);
    }
    if (output.size() != hidden.size()) {
      return absl::InternalError(absl::StrFormat("layer %d: captured %d values for %d", layer,
                                                 output.size(), hidden.size()));
    }

    std::set<std::string> replaced;
    for (const engine::NamedLinear& linear : model->linears()) {
      if (linear.request.name == "lm_head") continue;  // the window's, not the model's
      const engine::LinearLayerRequest request = RenamedRequest(linear.request, layer);
      const auto* handle = dynamic_cast<const QuantizedCpuLinearWeight*>(linear.handle);
      if (handle == nullptr) return absl::InternalError("a linear not on the quantized backend");
      if (handle->kept_float()) {
        state.float_layers.push_back(request.name);
        continue;
      }
      FF_ASSIGN_OR_RETURN(const QuantizedLinear* quantized, handle->Quantized(recipe));
      StoredLinearLayer entry;
      std::vector<TensorToWrite> tensors;
      {
        const ScopedPhase phase(QuantizePhase::kPack);
        FF_RETURN_IF_ERROR(AddQuantizedLayer(request, *quantized, recipe, entry, tensors));
      }
      const ScopedPhase phase(QuantizePhase::kWrite);
      for (const TensorToWrite& tensor : tensors) FF_RETURN_IF_ERROR(writer.Add(tensor));
      state.layers.push_back(std::move(entry));
      for (const auto& part : request.parts) {
        replaced.insert(part.prefix + "weight");
        replaced.insert(part.prefix + "bias");
      }
    }
    // The layer's other tensors (norms, routers) byte for byte in the source's dtype.
    {
      const ScopedPhase phase(QuantizePhase::kWrite);
      for (const std::string& name : store.TensorNames()) {
        if (!name.starts_with(prefix)) continue;
        FF_ASSIGN_OR_RETURN(const TensorInfo* info, store.Get(name));
        if (replaced.count(name) == 0) {
          FF_RETURN_IF_ERROR(writer.Add(name, info->dtype, info->shape, info->data));
        }
        ReleaseMappedPages(info->data);
      }
    }
    // The window model, then its backend (float weights, statistics, codes) are freed here.
    const ScopedPhase phase(QuantizePhase::kFree);
    model.reset();
    backend.reset();
  }
  const ScopedPhase phase(QuantizePhase::kFree);
  hidden = std::move(output);
  malloc_trim(0);  // hand the freed layer back to the system: the next one is as large
  return absl::OkStatus();
}

}  // namespace

fs::path DefaultWorkDirectory(const fs::path& out_dir) {
  const fs::path absolute = fs::absolute(out_dir).lexically_normal();
  fs::path name = absolute.filename();
  if (name.empty()) name = absolute.parent_path().filename();
  return absolute.parent_path() / absl::StrCat(".", name.string(), ".quantize-work");
}

absl::Status QuantizeSequentially(const QuantRecipe& recipe, const CalibrationData& calibration,
                                  const SequentialQuantizeOptions& options) {
  FF_RETURN_IF_ERROR(CheckOutputDirectory(options.out_dir, options.force));
  if (calibration.sequences.empty() || calibration.tokens() == 0) {
    return absl::InvalidArgumentError("no calibration tokens");
  }
  if (options.batch_tokens <= 0 || options.shard_bytes <= 0) {
    return absl::InvalidArgumentError("batch tokens and shard size must be positive");
  }
  FF_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(options.source_dir));
  // Recipes the backend cannot run fail here, before any layer.
  FF_RETURN_IF_ERROR(QuantizedCpuBackend::Create(recipe, KeepFloatByName()).status());
  FF_ASSIGN_OR_RETURN(std::unique_ptr<WeightStore> owned_store,
                      WeightStore::Open(options.source_dir));
  const WeightStore& store = *owned_store;
  // The same mapped files through the model's weight-source interface.
  FF_ASSIGN_OR_RETURN(std::unique_ptr<WeightStore> source_store,
                      WeightStore::Open(options.source_dir));
  const WeightStore& checkpoint_store = *source_store;
  const engine::CheckpointWeightSource checkpoint(std::move(source_store));

  const fs::path work =
      options.work_dir.empty() ? DefaultWorkDirectory(options.out_dir) : options.work_dir;
  const fs::path output_dir = work / kOutputDir;
  std::vector<float> hidden;
  RunState state;
  std::error_code error;
  bool resumed = false;
  if (options.resume) {
    FF_ASSIGN_OR_RETURN(std::optional<RunState> saved, LoadState(work, recipe, options, hidden));
    if (saved.has_value()) {
      state = *std::move(saved);
      resumed = true;
    }
  }
  ShardedTensorWriter writer(output_dir, options.shard_bytes,
                             {{"format", std::string(kQuantizedCheckpointFormat)}});
  if (resumed) {
    if (hidden.size() != static_cast<size_t>(calibration.tokens() * config.hidden_size)) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "--resume: %s holds hidden states of another calibration set", work.string()));
    }
    FF_RETURN_IF_ERROR(writer.Restore(state.writer));
  } else {
    fs::remove_all(work, error);
    fs::create_directories(output_dir, error);
    if (error) {
      return absl::InternalError(
          absl::StrFormat("cannot create %s: %s", output_dir.string(), error.message()));
    }
    FF_ASSIGN_OR_RETURN(hidden, EmbeddingRows(store, config, calibration));
  }

  const auto start = std::chrono::steady_clock::now();
  auto seconds_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  const int64_t layers = config.num_hidden_layers;
  for (int64_t l = 0; l < state.layers_done && options.progress; ++l) {
    LayerProgress progress;
    progress.layer = l + 1;
    progress.layers = layers;
    progress.resumed = true;
    progress.peak_rss_bytes = PeakRssBytes();
    SummarizeExperts(state, l, progress);
    options.progress(progress);
  }
  int64_t done_this_run = 0;
  for (int64_t l = state.layers_done; l < layers; ++l) {
    if (options.stop_after_layers >= 0 && done_this_run >= options.stop_after_layers) {
      return absl::AbortedError(
          absl::StrFormat("stopped after %d layers (test hook); --resume continues", l));
    }
    const auto layer_start = std::chrono::steady_clock::now();
    PhaseTimes phases;
    {
      const PhaseRecorder recorder(phases);
      FF_RETURN_IF_ERROR(QuantizeLayer(recipe, calibration, options, config, store,
                                       checkpoint_store, checkpoint, l, hidden, writer, state));
      state.layers_done = l + 1;
      const ScopedPhase phase(QuantizePhase::kWrite);
      FF_ASSIGN_OR_RETURN(state.writer, writer.Sync());
      FF_RETURN_IF_ERROR(SaveState(work, recipe, options, state, hidden));
    }
    ++done_this_run;
    if (options.progress) {
      LayerProgress progress;
      progress.layer = l + 1;
      progress.layers = layers;
      progress.layer_seconds = seconds_since(layer_start);
      progress.phases = phases;
      progress.elapsed_seconds = seconds_since(start);
      progress.eta_seconds =
          progress.elapsed_seconds / static_cast<double>(done_this_run) * (layers - l - 1);
      progress.peak_rss_bytes = PeakRssBytes();
      SummarizeExperts(state, l, progress);
      options.progress(progress);
    }
  }

  // Embeddings, final norm, LM head (everything outside the decoder layers) byte for byte.
  for (const std::string& name : store.TensorNames()) {
    if (name.starts_with("model.layers.")) continue;
    FF_ASSIGN_OR_RETURN(const TensorInfo* info, store.Get(name));
    FF_RETURN_IF_ERROR(writer.Add(name, info->dtype, info->shape, info->data));
    ReleaseMappedPages(info->data);
  }
  state.float_layers.push_back("lm_head");
  FF_ASSIGN_OR_RETURN(WrittenShards shards, writer.Finish());
  const nlohmann::json index = {{"metadata", {{"total_size", shards.total_bytes}}},
                                {"weight_map", shards.weight_map}};
  FF_RETURN_IF_ERROR(WriteTextFile(output_dir / kIndexFile, index.dump(1)));
  FF_RETURN_IF_ERROR(WriteTextFile(output_dir / std::string(kQuantizationJsonName),
                                   ManifestOf(recipe, options, shards.files, state)));
  FF_RETURN_IF_ERROR(CopySideFiles(options.source_dir, output_dir));
  FF_RETURN_IF_ERROR(CheckOutputDirectory(options.out_dir, options.force));
  FF_RETURN_IF_ERROR(MoveIntoPlace(output_dir, options.out_dir));
  fs::remove_all(work, error);
  return absl::OkStatus();
}

}  // namespace flatfleet::quant
