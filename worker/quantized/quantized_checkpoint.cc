#include "worker/quantized/quantized_checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/model_config.h"
#include "common/shape_string.h"
#include "common/status_macros.h"
#include "common/tensor_slicing.h"
#include "common/thread_pool.h"
#include "kernels/cpu/quant/bit_packing.h"
#include "quant/stored_layer_on_device.h"
#include "quant/stored_layer_slicing.h"

namespace flatfleet::quant {
namespace {

namespace fs = std::filesystem;

constexpr char kTensorFileName[] = "model.safetensors";
// Copied from the source directory when present.
constexpr const char* kSideFiles[] = {"config.json",
                                      "generation_config.json",
                                      "tokenizer.json",
                                      "tokenizer.model",
                                      "tokenizer_config.json",
                                      "special_tokens_map.json",
                                      "added_tokens.json",
                                      "vocab.json",
                                      "merges.txt"};

int64_t PackedRowBytes(int64_t cols, int bits) { return (cols * bits + 7) / 8; }

template <typename T>
std::vector<std::byte> Bytes(const std::vector<T>& values) {
  std::vector<std::byte> bytes(values.size() * sizeof(T));
  if (!bytes.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

template <typename T>
std::vector<T> Values(const TensorInfo& info) {
  std::vector<T> values(info.data.size() / sizeof(T));
  if (!values.empty()) std::memcpy(values.data(), info.data.data(), values.size() * sizeof(T));
  return values;
}

// The rows of `matrix`'s codes, each packed as a b-bit two's complement bitstream. Rows in
// parallel, each into its own slice of the output (the bytes do not depend on the thread count);
// on bad codes the error is the first bad row's.
absl::StatusOr<std::vector<std::byte>> PackCodes(const QuantizedMatrix& matrix) {
  const int64_t row_bytes = PackedRowBytes(matrix.cols, matrix.format.bits);
  if (static_cast<int64_t>(matrix.codes.size()) != matrix.rows * matrix.cols) {
    return absl::InvalidArgumentError("PackCodes: codes do not match the matrix shape");
  }
  std::vector<std::byte> out(matrix.rows * row_bytes);
  std::mutex mutex;
  int64_t error_row = matrix.rows;
  absl::Status error;
  ThreadPool::Default().ParallelFor(
      matrix.rows,
      [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          absl::Status status = PackBitstreamInto(
              std::span<const int8_t>(matrix.codes).subspan(r * matrix.cols, matrix.cols),
              matrix.format.bits, Signedness::kSigned,
              std::span<uint8_t>(reinterpret_cast<uint8_t*>(out.data()) + r * row_bytes,
                                 row_bytes));
          if (!status.ok()) {
            std::lock_guard<std::mutex> lock(mutex);
            if (r < error_row) {
              error_row = r;
              error = std::move(status);
            }
            return;  // this chunk's later rows cannot be first
          }
        }
      },
      std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, matrix.cols)));
  if (!error.ok()) return error;
  return out;
}

// The tensors of one quantized matrix: NAME.qweight, NAME.scales and (asymmetric) NAME.zeros.
absl::Status AddMatrixTensors(const std::string& layer, const QuantizedMatrix& matrix,
                              std::vector<TensorToWrite>& tensors) {
  FF_ASSIGN_OR_RETURN(std::vector<std::byte> packed, PackCodes(matrix));
  tensors.push_back({StoredTensorName(layer, "qweight"),
                     DType::kU8,
                     {matrix.rows, PackedRowBytes(matrix.cols, matrix.format.bits)},
                     std::move(packed)});
  const int64_t groups = matrix.GroupsPerRow();
  tensors.push_back({StoredTensorName(layer, "scales"),
                     DType::kF16,
                     {matrix.rows, groups},
                     Bytes(matrix.scales)});
  if (!matrix.format.symmetric) {
    tensors.push_back({StoredTensorName(layer, "zeros"),
                       DType::kI8,
                       {matrix.rows, groups},
                       Bytes(matrix.zero_points)});
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status AddQuantizedLayer(const engine::LinearLayerRequest& request,
                               const QuantizedLinear& layer, const QuantRecipe& recipe,
                               StoredLinearLayer& entry, std::vector<TensorToWrite>& tensors) {
  const std::string& name = request.name;
  entry.name = name;
  entry.parallel = request.parallel == engine::LinearLayerRequest::Parallel::kColumn
                       ? LayerParallelism::kColumn
                   : request.parallel == engine::LinearLayerRequest::Parallel::kRow
                       ? LayerParallelism::kRow
                       : LayerParallelism::kReplicated;
  for (const engine::LinearLayerRequest::Part& part : request.parts) {
    if (part.row_begin != 0 || part.row_end != part.total_rows || request.column_begin != 0 ||
        request.column_end != request.in_features) {
      return absl::FailedPreconditionError(
          absl::StrFormat("layer %s: only a single-rank model can be written", name));
    }
    std::string prefix = part.prefix;
    if (prefix.ends_with(".")) prefix.pop_back();
    entry.stacked.push_back(prefix);
    entry.stacked_rows.push_back(part.total_rows);
  }
  entry.out_features = layer.out_features();
  entry.in_features = layer.in_features();
  entry.transformed_features = layer.transformed_features();
  entry.gemm = layer.gemm_kind();
  entry.activation_format = layer.activation_format();
  entry.static_activation_scale = layer.static_activation_scale();
  entry.bias = !layer.bias().empty();
  entry.output_shift = !layer.output_shift().empty();
  // The layer's own members, not ToParts(): that would copy every code of the layer.
  switch (entry.gemm) {
    case LinearGemmKind::kFloatScales:
      entry.weight_format = layer.weight().format;
      FF_RETURN_IF_ERROR(AddMatrixTensors(name, layer.weight(), tensors));
      break;
    case LinearGemmKind::kIntegerScales: {
      const IntegerScaledWeight& scaled = layer.integer_scaled();
      entry.weight_format = scaled.weight.format;
      entry.amplifier_bits = scaled.amplifier_bits;
      FF_RETURN_IF_ERROR(AddMatrixTensors(name, scaled.weight, tensors));
      tensors.push_back({StoredTensorName(name, "scale_multipliers"),
                         DType::kI32,
                         {scaled.weight.rows, scaled.weight.GroupsPerRow()},
                         Bytes(scaled.multipliers)});
      tensors.push_back({StoredTensorName(name, "base_scales"),
                         DType::kF16,
                         {scaled.weight.rows},
                         Bytes(scaled.base_scales)});
      break;
    }
    case LinearGemmKind::kQuik: {
      const QuikWeight& quik = layer.quik();
      entry.weight_format = quik.base.format;
      entry.outlier_channels = quik.outlier_channels;
      FF_RETURN_IF_ERROR(AddMatrixTensors(name, quik.base, tensors));
      tensors.push_back({StoredTensorName(name, "outlier_weight"),
                         DType::kF16,
                         {quik.n, static_cast<int64_t>(quik.outlier_channels.size())},
                         Bytes(quik.outlier_weights)});
      break;
    }
  }
  if (entry.bias) {
    tensors.push_back({StoredTensorName(name, "bias"),
                       DType::kF32,
                       {static_cast<int64_t>(layer.bias().size())},
                       Bytes(layer.bias())});
  }
  if (entry.output_shift) {
    tensors.push_back({StoredTensorName(name, "output_shift"),
                       DType::kF32,
                       {static_cast<int64_t>(layer.output_shift().size())},
                       Bytes(layer.output_shift())});
  }
  const WeightGroupChoice group = ChooseWeightGroupSize(
      recipe.spec.weight.group_size,
      entry.transformed_features - static_cast<int64_t>(entry.outlier_channels.size()));
  if (group.fallback != GroupSizeFallback::kNone) {
    if (group.group_size != entry.weight_format.group_size) {
      return absl::InternalError(
          absl::StrFormat("layer %s: group size %d differs from the recipe's fallback %d", name,
                          entry.weight_format.group_size, group.group_size));
    }
    entry.group_size_fallback = group.fallback;
    entry.requested_group_size = recipe.spec.weight.group_size;
  }
  const auto& transforms = layer.transforms().transforms();
  for (size_t i = 0; i < transforms.size(); ++i) {
    TransformState state = transforms[i]->Save();
    StoredTransform stored{state.kind, state.params, {}};
    for (auto& [array_name, values] : state.arrays) {
      stored.arrays.push_back(array_name);
      tensors.push_back({StoredTransformArrayName(name, i, array_name),
                         DType::kF32,
                         {static_cast<int64_t>(values.size())},
                         Bytes(values)});
    }
    entry.transforms.push_back(std::move(stored));
  }
  return absl::OkStatus();
}

absl::Status WriteTextFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

fs::path SiblingPath(const fs::path& out_dir, std::string_view what) {
  static std::atomic<int> counter{0};
  const fs::path absolute = fs::absolute(out_dir).lexically_normal();
  fs::path name = absolute.filename();
  if (name.empty()) name = absolute.parent_path().filename();
  return absolute.parent_path() /
         absl::StrFormat(".%s.%s-%d-%d", name.string(), what, getpid(), counter.fetch_add(1));
}

// Moves the finished temporary directory to `out_dir`, replacing what is there (already
// checked by CheckOutputDirectory).
absl::Status MoveIntoPlace(const fs::path& temporary, const fs::path& out_dir) {
  std::error_code error;
  fs::path old;
  if (fs::exists(out_dir, error)) {
    old = SiblingPath(out_dir, "old");
    fs::rename(out_dir, old, error);
    if (error) {
      return absl::InternalError(
          absl::StrFormat("cannot move the old %s aside: %s", out_dir.string(), error.message()));
    }
  }
  fs::rename(temporary, out_dir, error);
  if (error) {
    std::error_code ignored;
    if (!old.empty()) fs::rename(old, out_dir, ignored);  // put the old one back
    return absl::InternalError(absl::StrFormat("cannot rename %s to %s: %s", temporary.string(),
                                               out_dir.string(), error.message()));
  }
  if (!old.empty()) fs::remove_all(old, error);
  return absl::OkStatus();
}

absl::Status CopySideFiles(const fs::path& source_dir, const fs::path& dir) {
  for (const char* file : kSideFiles) {
    const fs::path from = source_dir / file;
    if (!fs::exists(from)) continue;
    std::error_code copy_error;
    fs::copy_file(from, dir / file, fs::copy_options::overwrite_existing, copy_error);
    // A read-only source file stays editable in the copy.
    if (!copy_error) {
      fs::permissions(dir / file, fs::perms::owner_write, fs::perm_options::add, copy_error);
    }
    if (copy_error) {
      return absl::InternalError(
          absl::StrFormat("cannot copy %s: %s", from.string(), copy_error.message()));
    }
  }
  return absl::OkStatus();
}

namespace {

std::string MatchingRows(const engine::LinearLayerRequest& request,
                         const StoredLinearLayer& layer) {
  if (request.parts.size() != layer.stacked.size()) return "a different number of stacked tensors";
  for (size_t i = 0; i < layer.stacked.size(); ++i) {
    if (request.parts[i].prefix != layer.stacked[i] + "." ||
        request.parts[i].total_rows != layer.stacked_rows[i]) {
      return absl::StrFormat("stacked tensor %d is %s with %d rows, the model expects %s with %d",
                             i, layer.stacked[i], layer.stacked_rows[i], request.parts[i].prefix,
                             request.parts[i].total_rows);
    }
  }
  if (request.in_features != layer.in_features) {
    return absl::StrFormat("%d inputs, the model expects %d", layer.in_features,
                           request.in_features);
  }
  return "";
}

}  // namespace

absl::Status CheckOutputDirectory(const fs::path& out_dir, bool force) {
  std::error_code error;
  if (!fs::exists(out_dir, error)) return absl::OkStatus();
  if (!fs::is_directory(out_dir, error)) {
    return absl::AlreadyExistsError(
        absl::StrFormat("%s exists and is not a directory", out_dir.string()));
  }
  if (!force && !fs::is_empty(out_dir, error)) {
    return absl::AlreadyExistsError(
        absl::StrFormat("%s is not empty; pass --force to replace it", out_dir.string()));
  }
  return absl::OkStatus();
}

absl::Status WriteQuantizedCheckpoint(const engine::LlamaModel& model,
                                      const QuantizedCpuBackend& backend,
                                      const CheckpointWriteOptions& options) {
  FF_RETURN_IF_ERROR(CheckOutputDirectory(options.out_dir, options.force));
  if (model.tensor_parallel_layout().sharded()) {
    return absl::FailedPreconditionError("only a single-rank model can be written");
  }
  FF_ASSIGN_OR_RETURN(std::unique_ptr<WeightStore> source, WeightStore::Open(options.source_dir));
  const auto start = std::chrono::steady_clock::now();

  QuantizedCheckpointManifest manifest;
  manifest.recipe = backend.recipe();
  manifest.source_model = fs::absolute(options.source_dir).lexically_normal().string();
  manifest.calibration = options.calibration_info;
  manifest.tensor_files = {kTensorFileName};
  std::vector<TensorToWrite> tensors;
  std::set<std::string> replaced;  // source tensors the quantized layers stand for
  const std::vector<engine::NamedLinear>& linears = model.linears();
  int64_t index = 0;
  for (const engine::NamedLinear& linear : linears) {
    ++index;
    const auto* handle = dynamic_cast<const QuantizedCpuLinearWeight*>(linear.handle);
    if (handle == nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "layer %s was not prepared by a QuantizedCpuBackend", linear.request.name));
    }
    if (handle->kept_float()) {
      manifest.float_layers.push_back(linear.request.name);
    } else {
      FF_ASSIGN_OR_RETURN(const QuantizedLinear* layer, handle->Quantized(backend.recipe()));
      StoredLinearLayer entry;
      FF_RETURN_IF_ERROR(
          AddQuantizedLayer(linear.request, *layer, backend.recipe(), entry, tensors));
      manifest.layers.push_back(std::move(entry));
      for (const auto& part : linear.request.parts) {
        replaced.insert(part.prefix + "weight");
        replaced.insert(part.prefix + "bias");
      }
    }
    if (options.progress) {
      options.progress(
          {index, static_cast<int64_t>(linears.size()), linear.request.name,
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()});
    }
  }
  // Everything else (embeddings, norms, float linears) byte for byte in the source's dtype.
  for (const std::string& name : source->TensorNames()) {
    if (replaced.count(name) != 0) continue;
    FF_ASSIGN_OR_RETURN(const TensorInfo* info, source->Get(name));
    std::vector<std::byte> bytes(info->data.begin(), info->data.end());
    tensors.push_back({name, info->dtype, info->shape, std::move(bytes)});
  }

  const fs::path temporary = SiblingPath(options.out_dir, "tmp");
  std::error_code error;
  fs::create_directories(temporary, error);
  if (error) {
    return absl::InternalError(
        absl::StrFormat("cannot create %s: %s", temporary.string(), error.message()));
  }
  absl::Status status = [&]() -> absl::Status {
    FF_RETURN_IF_ERROR(CopySideFiles(options.source_dir, temporary));
    FF_RETURN_IF_ERROR(WriteSafetensors(temporary / kTensorFileName, tensors,
                                        {{"format", std::string(kQuantizedCheckpointFormat)}}));
    FF_RETURN_IF_ERROR(WriteTextFile(temporary / std::string(kQuantizationJsonName),
                                     SerializeQuantizedCheckpointManifest(manifest)));
    FF_RETURN_IF_ERROR(CheckOutputDirectory(options.out_dir, options.force));
    return MoveIntoPlace(temporary, options.out_dir);
  }();
  if (!status.ok()) fs::remove_all(temporary, error);
  return status;
}

absl::StatusOr<StoredWeightSize> QuantizedWeightSize(const engine::LlamaModel& model,
                                                     const QuantizedCpuBackend& backend) {
  StoredWeightSize size;
  for (const engine::NamedLinear& linear : model.linears()) {
    const auto* handle = dynamic_cast<const QuantizedCpuLinearWeight*>(linear.handle);
    if (handle == nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "layer %s was not prepared by a QuantizedCpuBackend", linear.request.name));
    }
    if (handle->kept_float()) continue;
    FF_ASSIGN_OR_RETURN(const QuantizedLinear* layer, handle->Quantized(backend.recipe()));
    StoredLinearLayer entry;
    std::vector<TensorToWrite> tensors;
    FF_RETURN_IF_ERROR(AddQuantizedLayer(linear.request, *layer, backend.recipe(), entry, tensors));
    for (const TensorToWrite& tensor : tensors) {
      size.bytes += static_cast<int64_t>(tensor.bytes.size());
    }
    size.parameters += layer->out_features() * layer->in_features();
  }
  return size;
}

bool IsQuantizedCheckpoint(const fs::path& dir) {
  std::error_code error;
  return fs::is_regular_file(dir / std::string(kQuantizationJsonName), error);
}

absl::StatusOr<std::unique_ptr<QuantizedCheckpointSource>> QuantizedCheckpointSource::Open(
    const fs::path& dir) {
  const fs::path manifest_path = dir / std::string(kQuantizationJsonName);
  std::ifstream in(manifest_path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", manifest_path.string()));
  std::stringstream text;
  text << in.rdbuf();
  auto source = std::unique_ptr<QuantizedCheckpointSource>(new QuantizedCheckpointSource());
  source->dir_ = dir;
  absl::StatusOr<QuantizedCheckpointManifest> manifest =
      ParseQuantizedCheckpointManifest(text.str());
  if (!manifest.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir.string(), ": ", manifest.status().message()));
  }
  source->manifest_ = *std::move(manifest);
  for (const std::string& file : source->manifest_.tensor_files) {
    FF_ASSIGN_OR_RETURN(std::unique_ptr<WeightStore> store, WeightStore::Open(dir / file));
    source->stores_.push_back(std::move(store));
  }
  return source;
}

absl::StatusOr<const TensorInfo*> QuantizedCheckpointSource::Find(std::string_view name) const {
  for (const auto& store : stores_) {
    if (const TensorInfo* info = store->Find(name)) return info;
  }
  std::string files;
  for (const std::string& file : manifest_.tensor_files) {
    absl::StrAppend(&files, files.empty() ? "" : ", ", (dir_ / file).string());
  }
  return absl::NotFoundError(
      absl::StrFormat("tensor '%s' is missing from %s", std::string(name), files));
}

bool QuantizedCheckpointSource::Has(std::string_view name) const { return Find(name).ok(); }

absl::StatusOr<Tensor> QuantizedCheckpointSource::Load(std::string_view name,
                                                       const std::vector<int64_t>& shape) const {
  FF_ASSIGN_OR_RETURN(const TensorInfo* info, Find(name));
  if (info->shape != shape) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: tensor '%s' has shape %s, expected %s", info->file, std::string(name),
                        FormatShape(info->shape), FormatShape(shape)));
  }
  return ToFloat32(*info);
}

absl::StatusOr<Tensor> QuantizedCheckpointSource::LoadSlice(
    std::string_view name, const std::vector<int64_t>& shape,
    const engine::TensorSlice& slice) const {
  // Only float tensors (embeddings, LM head) are sliced this way; they are small enough to
  // convert whole first.
  FF_ASSIGN_OR_RETURN(Tensor whole, Load(name, shape));
  return slice.dim == 0 ? SliceRows(whole, slice.begin, slice.end)
                        : SliceColumns(whole, slice.begin, slice.end);
}

absl::StatusOr<const TensorInfo*> QuantizedCheckpointSource::ExpectTensor(
    const std::string& name, DType dtype, const std::vector<int64_t>& shape) const {
  FF_ASSIGN_OR_RETURN(const TensorInfo* info, Find(name));
  if (info->dtype != dtype || info->shape != shape) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: tensor '%s' is %s %s, expected %s %s", info->file, name, DTypeName(info->dtype),
        FormatShape(info->shape), DTypeName(dtype), FormatShape(shape)));
  }
  return info;
}

absl::StatusOr<QuantizedLinearParts> QuantizedCheckpointSource::ReadLayerParts(
    const StoredLinearLayer& layer) const {
  const std::string& name = layer.name;
  const int64_t n = layer.out_features;
  const int64_t outliers = static_cast<int64_t>(layer.outlier_channels.size());
  // The integer matrix: all columns, or the non-outlier ones for QUIK.
  QuantizedMatrix matrix;
  matrix.rows = n;
  matrix.cols = layer.transformed_features - outliers;
  matrix.format = layer.weight_format;
  const int64_t groups = matrix.GroupsPerRow();
  const int bits = matrix.format.bits;
  const int64_t row_bytes = PackedRowBytes(matrix.cols, bits);
  {
    const std::string tensor = StoredTensorName(name, "qweight");
    FF_ASSIGN_OR_RETURN(const TensorInfo* qweight,
                        ExpectTensor(tensor, DType::kU8, {n, row_bytes}));
    matrix.codes.reserve(n * matrix.cols);
    const auto* bytes = reinterpret_cast<const uint8_t*>(qweight->data.data());
    for (int64_t r = 0; r < n; ++r) {
      FF_ASSIGN_OR_RETURN(std::vector<int32_t> codes,
                          UnpackBitstream({bytes + r * row_bytes, static_cast<size_t>(row_bytes)},
                                          matrix.cols, bits, Signedness::kSigned));
      for (int32_t code : codes) matrix.codes.push_back(static_cast<int8_t>(code));
    }
  }
  FF_ASSIGN_OR_RETURN(const TensorInfo* scales,
                      ExpectTensor(StoredTensorName(name, "scales"), DType::kF16, {n, groups}));
  matrix.scales = Values<uint16_t>(*scales);
  if (!matrix.format.symmetric) {
    FF_ASSIGN_OR_RETURN(const TensorInfo* zeros,
                        ExpectTensor(StoredTensorName(name, "zeros"), DType::kI8, {n, groups}));
    matrix.zero_points = Values<int8_t>(*zeros);
  }
  if (absl::Status valid = matrix.Validate(); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: layer %s: stored weight is invalid: %s",
                                                      (dir_ / manifest_.tensor_files[0]).string(),
                                                      name, valid.message()));
  }

  QuantizedLinearParts parts;
  parts.in_features = layer.in_features;
  parts.gemm_kind = layer.gemm;
  parts.activation_format = layer.activation_format;
  parts.static_activation_scale = layer.static_activation_scale;
  switch (layer.gemm) {
    case LinearGemmKind::kFloatScales:
      parts.weight = std::move(matrix);
      break;
    case LinearGemmKind::kIntegerScales: {
      FF_ASSIGN_OR_RETURN(
          const TensorInfo* multipliers,
          ExpectTensor(StoredTensorName(name, "scale_multipliers"), DType::kI32, {n, groups}));
      FF_ASSIGN_OR_RETURN(const TensorInfo* base,
                          ExpectTensor(StoredTensorName(name, "base_scales"), DType::kF16, {n}));
      parts.integer_scaled.weight = std::move(matrix);
      parts.integer_scaled.amplifier_bits = layer.amplifier_bits;
      parts.integer_scaled.multipliers = Values<int32_t>(*multipliers);
      parts.integer_scaled.base_scales = Values<uint16_t>(*base);
      break;
    }
    case LinearGemmKind::kQuik: {
      FF_ASSIGN_OR_RETURN(
          const TensorInfo* outlier_weight,
          ExpectTensor(StoredTensorName(name, "outlier_weight"), DType::kF16, {n, outliers}));
      parts.quik.n = n;
      parts.quik.k = layer.transformed_features;
      parts.quik.outlier_channels = layer.outlier_channels;
      parts.quik.outlier_weights = Values<uint16_t>(*outlier_weight);
      parts.quik.base = std::move(matrix);
      break;
    }
  }
  if (layer.bias) {
    FF_ASSIGN_OR_RETURN(const TensorInfo* bias,
                        ExpectTensor(StoredTensorName(name, "bias"), DType::kF32, {n}));
    parts.bias = Values<float>(*bias);
  }
  if (layer.output_shift) {
    FF_ASSIGN_OR_RETURN(const TensorInfo* shift,
                        ExpectTensor(StoredTensorName(name, "output_shift"), DType::kF32, {n}));
    parts.output_shift = Values<float>(*shift);
  }
  std::vector<std::shared_ptr<const InputTransform>> transforms;
  for (size_t i = 0; i < layer.transforms.size(); ++i) {
    const StoredTransform& stored = layer.transforms[i];
    TransformState state{stored.kind, stored.params, {}};
    for (const std::string& array : stored.arrays) {
      const std::string tensor = StoredTransformArrayName(name, i, array);
      FF_ASSIGN_OR_RETURN(const TensorInfo* info, Find(tensor));
      if (info->dtype != DType::kF32 || info->shape.size() != 1) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: tensor '%s' is %s %s, expected a 1-D F32 array", info->file,
                            tensor, DTypeName(info->dtype), FormatShape(info->shape)));
      }
      state.arrays[array] = Values<float>(*info);
    }
    absl::StatusOr<std::shared_ptr<const InputTransform>> transform = LoadInputTransform(state);
    if (!transform.ok()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("layer %s: transform %d: %s", name, i, transform.status().message()));
    }
    transforms.push_back(*std::move(transform));
  }
  absl::StatusOr<InputTransformChain> chain = InputTransformChain::Create(std::move(transforms));
  if (!chain.ok()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("layer %s: %s", name, chain.status().message()));
  }
  parts.transforms = *std::move(chain);
  if (parts.transforms.OutFeatures(layer.in_features) != layer.transformed_features) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "layer %s: its transforms make %d features but transformed_features is %d", name,
        parts.transforms.OutFeatures(layer.in_features), layer.transformed_features));
  }
  return parts;
}

absl::StatusOr<std::unique_ptr<kernels::LinearWeight>>
QuantizedCheckpointSource::LoadPreparedLinear(const engine::LinearLayerRequest& request,
                                              kernels::Backend& backend) const {
  const StoredLinearLayer* layer = nullptr;
  for (const StoredLinearLayer& candidate : manifest_.layers) {
    if (candidate.name == request.name) layer = &candidate;
  }
  if (layer == nullptr) {
    for (const std::string& name : manifest_.float_layers) {
      if (name == request.name) return std::unique_ptr<kernels::LinearWeight>();
    }
    return absl::NotFoundError(
        absl::StrFormat("%s: layer %s is neither a quantized nor a float layer",
                        (dir_ / std::string(kQuantizationJsonName)).string(), request.name));
  }
  if (std::string mismatch = MatchingRows(request, *layer); !mismatch.empty()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: layer %s has %s", kQuantizationJsonName, layer->name, mismatch));
  }
  FF_ASSIGN_OR_RETURN(QuantizedLinearParts parts, ReadLayerParts(*layer));
  // This rank's share.
  if (request.parallel == engine::LinearLayerRequest::Parallel::kRow) {
    if (request.with_bias && !layer->bias) {
      return absl::InvalidArgumentError(
          absl::StrFormat("layer %s: the model expects a bias but none is stored", layer->name));
    }
    if (!request.with_bias) parts.bias.clear();  // another rank adds it
    // Partial sums: the output correction's shift is added once, by the first columns' rank.
    if (request.column_begin != 0) parts.output_shift.clear();
    FF_ASSIGN_OR_RETURN(
        parts, SliceInputColumns(layer->name, parts, request.column_begin, request.column_end));
  } else {
    if (request.with_bias != layer->bias) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "layer %s: the model %s a bias but the checkpoint %s one", layer->name,
          request.with_bias ? "expects" : "has no", layer->bias ? "stores" : "does not store"));
    }
    std::vector<std::pair<int64_t, int64_t>> ranges;
    int64_t offset = 0;
    bool whole = true;
    for (const engine::LinearLayerRequest::Part& part : request.parts) {
      ranges.push_back({offset + part.row_begin, offset + part.row_end});
      whole &= part.row_begin == 0 && part.row_end == part.total_rows;
      offset += part.total_rows;
    }
    if (!whole) {
      FF_ASSIGN_OR_RETURN(parts, SliceOutputRows(layer->name, parts, ranges));
    }
  }
  absl::StatusOr<QuantizedLinear> rebuilt = QuantizedLinear::FromParts(std::move(parts));
  if (!rebuilt.ok()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("layer %s: %s", layer->name, rebuilt.status().message()));
  }
  if (backend.memory() == runtime::MemoryKind::kDevice) {
    return PrepareStoredLayerOnDevice(layer->name, *rebuilt, backend);
  }
  return std::unique_ptr<kernels::LinearWeight>(
      QuantizedCpuLinearWeight::FromStored(*std::move(rebuilt)));
}

absl::StatusOr<LoadedQuantizedModel> LoadQuantizedLlamaModel(const fs::path& dir,
                                                             engine::ModelOptions options,
                                                             kernels::Backend* device_backend) {
  FF_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir));
  FF_ASSIGN_OR_RETURN(std::unique_ptr<QuantizedCheckpointSource> source,
                      QuantizedCheckpointSource::Open(dir));
  LoadedQuantizedModel loaded;
  loaded.manifest = source->manifest();
  if (device_backend != nullptr) {
    // Stored layers go to the device's integer GEMMs; the float ones (LM head, routers) are
    // prepared as the backend prepares any float layer.
    absl::StatusOr<std::unique_ptr<engine::LlamaModel>> model =
        engine::BuildLlamaModel(config, *source, *device_backend, options);
    if (!model.ok()) {
      return absl::Status(
          model.status().code(),
          absl::StrCat(dir.string(), " (recipe ", loaded.manifest.recipe.name, ") on ",
                       std::string(device_backend->name()), ": ", model.status().message()));
    }
    loaded.model = *std::move(model);
  } else {
    // Linears prepared from float tensors are the ones the checkpoint keeps in float.
    FF_ASSIGN_OR_RETURN(
        loaded.backend,
        QuantizedCpuBackend::Create(loaded.manifest.recipe, [](std::string_view) { return true; }));
    FF_ASSIGN_OR_RETURN(loaded.model,
                        engine::BuildLlamaModel(config, *source, *loaded.backend, options));
  }
  // Every stored layer must have been used: a leftover means the checkpoint does not belong to
  // this config.json.
  std::set<std::string> used;
  for (const engine::NamedLinear& linear : loaded.model->linears()) {
    used.insert(linear.request.name);
  }
  for (const StoredLinearLayer& layer : loaded.manifest.layers) {
    if (used.count(layer.name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: layer %s is not a layer of the model in config.json",
                          (dir / std::string(kQuantizationJsonName)).string(), layer.name));
    }
  }
  return loaded;
}

}  // namespace flatfleet::quant
