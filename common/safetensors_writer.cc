// Writing safetensors files (tests, conversion tools, quantised checkpoints).
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/safetensors.h"
#include "common/shape_string.h"
#include "nlohmann/json.hpp"

namespace flatfleet {
namespace {

template <typename T>
void Store(const T& value, std::byte* at) {
  std::memcpy(at, &value, sizeof(T));
}

// Rounds to nearest and saturates to T's range; NaN becomes 0 (a float-to-int cast would be UB).
template <typename T>
T SaturatingRound(float value) {
  if (std::isnan(value)) return T{0};
  const double rounded = std::nearbyint(static_cast<double>(value));
  if (rounded <= static_cast<double>(std::numeric_limits<T>::min())) {
    return std::numeric_limits<T>::min();
  }
  if (rounded >= static_cast<double>(std::numeric_limits<T>::max())) {
    return std::numeric_limits<T>::max();
  }
  return static_cast<T>(rounded);
}

void EncodeElement(DType dtype, float value, std::byte* at) {
  switch (dtype) {
    case DType::kF64:
      return Store(static_cast<double>(value), at);
    case DType::kF32:
      return Store(value, at);
    case DType::kF16:
      return Store(FloatToHalf(value), at);
    case DType::kBF16:
      return Store(FloatToBF16(value), at);
    case DType::kI64:
      return Store(SaturatingRound<int64_t>(value), at);
    case DType::kI32:
      return Store(SaturatingRound<int32_t>(value), at);
    case DType::kI16:
      return Store(SaturatingRound<int16_t>(value), at);
    case DType::kI8:
      return Store(SaturatingRound<int8_t>(value), at);
    case DType::kU8:
      return Store(SaturatingRound<uint8_t>(value), at);
    case DType::kBool:
      return Store(static_cast<uint8_t>(value != 0.0f ? 1 : 0), at);
  }
}

std::string TemporaryName(const std::filesystem::path& path) {
  static std::atomic<uint64_t> counter{0};
  return absl::StrCat(path.string(), ".tmp-", getpid(), "-", counter.fetch_add(1));
}

}  // namespace

TensorToWrite FromFloat32(std::string name, const Tensor& tensor, DType dtype) {
  TensorToWrite result{std::move(name), dtype, tensor.shape(), {}};
  const size_t element_size = DTypeSize(dtype);
  result.bytes.resize(tensor.vector().size() * element_size);
  for (size_t i = 0; i < tensor.vector().size(); ++i) {
    EncodeElement(dtype, tensor.vector()[i], result.bytes.data() + i * element_size);
  }
  return result;
}

absl::Status WriteSafetensors(const std::filesystem::path& path,
                              const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  const std::string file = path.string();
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string_view> names;
  uint64_t offset = 0;
  for (const TensorToWrite& tensor : tensors) {
    if (tensor.name.empty() || tensor.name == "__metadata__" || !names.insert(tensor.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": tensor name '", tensor.name, "' is empty, reserved or repeated"));
    }
    int64_t count = 1;
    for (int64_t dim : tensor.shape) {
      if (dim < 0 || __builtin_mul_overflow(count, dim, &count)) {
        return absl::InvalidArgumentError(absl::StrCat(
            file, ": tensor '", tensor.name, "' has invalid shape ", FormatShape(tensor.shape)));
      }
    }
    if (tensor.bytes.size() != static_cast<uint64_t>(count) * DTypeSize(tensor.dtype)) {
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": tensor '", tensor.name, "' has ", tensor.bytes.size(), " bytes, but shape ",
          FormatShape(tensor.shape), " of ", std::string(DTypeName(tensor.dtype)), " needs ",
          count * DTypeSize(tensor.dtype)));
    }
    header[tensor.name] = {{"dtype", DTypeName(tensor.dtype)},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, offset + tensor.bytes.size()}}};
    offset += tensor.bytes.size();
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const std::exception& e) {  // e.g. a name that is not valid UTF-8
    return absl::InvalidArgumentError(absl::StrCat(file, ": cannot encode header: ", e.what()));
  }
  // Pad with spaces so the data region starts 8-byte aligned, as the reference writer does.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  const std::string temporary = TemporaryName(path);
  std::FILE* stream = std::fopen(temporary.c_str(), "wb");
  if (stream == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(file, ": cannot create ", temporary));
  }
  uint64_t header_size = header_text.size();
  bool ok = std::fwrite(&header_size, sizeof(header_size), 1, stream) == 1 &&
            std::fwrite(header_text.data(), 1, header_text.size(), stream) == header_text.size();
  for (const TensorToWrite& tensor : tensors) {
    if (!ok) break;
    if (tensor.bytes.empty()) continue;
    ok = std::fwrite(tensor.bytes.data(), 1, tensor.bytes.size(), stream) == tensor.bytes.size();
  }
  ok = (std::fclose(stream) == 0) && ok;
  std::error_code error;
  if (ok) std::filesystem::rename(temporary, path, error);
  if (!ok || error) {
    std::filesystem::remove(temporary, error);
    return absl::InternalError(absl::StrCat(file, ": write failed"));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet
