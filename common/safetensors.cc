#include "common/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/safetensors_header.h"
#include "common/shape_string.h"
#include "common/status_macros.h"
#include "common/strict_json.h"

namespace flatfleet {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian and is read in place");

// The reference implementation refuses headers above 100 MB; so do we, before allocating.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;
constexpr char kMetadataKey[] = "__metadata__";

absl::Status Invalid(const std::string& file, const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": ", message));
}

absl::Status InvalidTensor(const std::string& file, const std::string& tensor,
                           const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", tensor, "': ", message));
}

// A non-negative integer that fits int64; JSON floats such as 2.0 are refused.
absl::StatusOr<int64_t> NonNegativeInteger(const nlohmann::json& value, const std::string& file,
                                           const std::string& tensor, const std::string& field) {
  if (value.is_number_unsigned()) {
    uint64_t unsigned_value = value.get<uint64_t>();
    if (unsigned_value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return InvalidTensor(file, tensor, absl::StrCat(field, " value too large"));
    }
    return static_cast<int64_t>(unsigned_value);
  }
  if (value.is_number_integer()) {
    return InvalidTensor(file, tensor, absl::StrCat(field, " has a negative value"));
  }
  return InvalidTensor(file, tensor, absl::StrCat(field, " must hold non-negative integers"));
}

template <typename T>
T LoadUnaligned(const std::byte* at) {
  T value;
  std::memcpy(&value, at, sizeof(T));
  return value;
}

// Widens `count` elements of `dtype` starting at `src` into `dst`.
void ConvertToFloat32(DType dtype, const std::byte* src, int64_t count, float* dst) {
  if (count == 0) return;  // dst may be null; memcpy must not see it
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(count) * sizeof(float));
      return;
    case DType::kF64:
      for (int64_t i = 0; i < count; ++i)
        dst[i] = static_cast<float>(LoadUnaligned<double>(src + 8 * i));
      return;
    case DType::kF16:
      for (int64_t i = 0; i < count; ++i)
        dst[i] = HalfToFloat(LoadUnaligned<uint16_t>(src + 2 * i));
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < count; ++i)
        dst[i] = BF16ToFloat(LoadUnaligned<uint16_t>(src + 2 * i));
      return;
    case DType::kI64:
      for (int64_t i = 0; i < count; ++i)
        dst[i] = static_cast<float>(LoadUnaligned<int64_t>(src + 8 * i));
      return;
    case DType::kI32:
      for (int64_t i = 0; i < count; ++i)
        dst[i] = static_cast<float>(LoadUnaligned<int32_t>(src + 4 * i));
      return;
    case DType::kI16:
      for (int64_t i = 0; i < count; ++i)
        dst[i] = static_cast<float>(LoadUnaligned<int16_t>(src + 2 * i));
      return;
    case DType::kI8:
      for (int64_t i = 0; i < count; ++i)
        dst[i] = static_cast<float>(LoadUnaligned<int8_t>(src + i));
      return;
    case DType::kU8:
      for (int64_t i = 0; i < count; ++i)
        dst[i] = static_cast<float>(LoadUnaligned<uint8_t>(src + i));
      return;
    case DType::kBool:
      for (int64_t i = 0; i < count; ++i)
        dst[i] = LoadUnaligned<uint8_t>(src + i) != 0 ? 1.0f : 0.0f;
      return;
  }
}

struct ParsedEntry {
  TensorInfo info;
  uint64_t begin = 0;
  uint64_t end = 0;
};

absl::StatusOr<ParsedEntry> ParseEntry(const std::string& name, const nlohmann::json& entry,
                                       const std::string& file, uint64_t data_size) {
  ParsedEntry parsed;
  parsed.info.name = name;
  parsed.info.file = file;
  if (!entry.is_object()) return InvalidTensor(file, name, "entry is not a JSON object");

  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end()) return InvalidTensor(file, name, "missing 'dtype'");
  if (!dtype_it->is_string()) return InvalidTensor(file, name, "'dtype' is not a string");
  const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
  std::optional<DType> dtype = ParseDType(dtype_name);
  if (!dtype) return InvalidTensor(file, name, absl::StrCat("unknown dtype '", dtype_name, "'"));
  parsed.info.dtype = *dtype;

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end()) return InvalidTensor(file, name, "missing 'shape'");
  if (!shape_it->is_array()) return InvalidTensor(file, name, "'shape' is not an array");
  // The running product must fit int64 at every step, as Tensor::NumElements multiplies in order.
  int64_t num_elements = 1;
  for (const nlohmann::json& dim_json : *shape_it) {
    FF_ASSIGN_OR_RETURN(int64_t dim, NonNegativeInteger(dim_json, file, name, "'shape'"));
    if (__builtin_mul_overflow(num_elements, dim, &num_elements)) {
      return InvalidTensor(file, name, "shape element count overflows");
    }
    parsed.info.shape.push_back(dim);
  }
  uint64_t expected_bytes;
  if (__builtin_mul_overflow(static_cast<uint64_t>(num_elements), DTypeSize(*dtype),
                             &expected_bytes)) {
    return InvalidTensor(file, name, "shape byte size overflows");
  }

  auto offsets_it = entry.find("data_offsets");
  if (offsets_it == entry.end()) return InvalidTensor(file, name, "missing 'data_offsets'");
  if (!offsets_it->is_array() || offsets_it->size() != 2) {
    return InvalidTensor(file, name, "'data_offsets' is not an array of two integers");
  }
  FF_ASSIGN_OR_RETURN(int64_t begin,
                      NonNegativeInteger((*offsets_it)[0], file, name, "'data_offsets'"));
  FF_ASSIGN_OR_RETURN(int64_t end,
                      NonNegativeInteger((*offsets_it)[1], file, name, "'data_offsets'"));
  parsed.begin = static_cast<uint64_t>(begin);
  parsed.end = static_cast<uint64_t>(end);
  if (parsed.begin > parsed.end) {
    return InvalidTensor(file, name,
                         absl::StrCat("data_offsets reversed [", begin, ", ", end, "]"));
  }
  if (parsed.end > data_size) {
    return InvalidTensor(file, name,
                         absl::StrCat("data_offsets [", begin, ", ", end,
                                      "] beyond the data region of ", data_size, " bytes"));
  }
  if (parsed.end - parsed.begin != expected_bytes) {
    return InvalidTensor(file, name,
                         absl::StrCat("data_offsets span ", parsed.end - parsed.begin,
                                      " bytes but shape ", FormatShape(parsed.info.shape), " of ",
                                      dtype_name, " needs ", expected_bytes));
  }
  return parsed;
}

absl::StatusOr<std::map<std::string, std::string>> ParseMetadata(const nlohmann::json& metadata,
                                                                 const std::string& file) {
  std::map<std::string, std::string> result;
  if (metadata.is_null()) return result;
  if (!metadata.is_object()) return Invalid(file, "'__metadata__' is not a JSON object");
  for (const auto& [key, value] : metadata.items()) {
    if (!value.is_string()) {
      return Invalid(file, absl::StrCat("'__metadata__' value of '", key, "' is not a string"));
    }
    result.emplace(key, value.get<std::string>());
  }
  return result;
}

}  // namespace

SafetensorsFile::~SafetensorsFile() {
  if (mapped_) munmap(const_cast<std::byte*>(base_), size_);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::filesystem::path& path) {
  const std::string name = path.string();
  int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int error = errno;
    std::string message = absl::StrCat(name, ": cannot open: ", std::strerror(error));
    if (error == ENOENT) return absl::NotFoundError(message);
    return absl::PermissionDeniedError(message);
  }
  struct stat file_stat;
  if (fstat(fd, &file_stat) != 0 || !S_ISREG(file_stat.st_mode)) {
    ::close(fd);
    return Invalid(name, "not a regular file");
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = name;
  file->size_ = static_cast<size_t>(file_stat.st_size);
  if (file->size_ > 0) {
    void* mapping = mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED) {
      int error = errno;
      ::close(fd);
      return absl::InternalError(absl::StrCat(name, ": mmap failed: ", std::strerror(error)));
    }
    file->base_ = static_cast<const std::byte*>(mapping);
    file->mapped_ = true;
  }
  ::close(fd);  // the mapping stays valid
  FF_RETURN_IF_ERROR(file->ParseImage());
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Parse(
    std::span<const std::byte> bytes, std::string display_name) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = std::move(display_name);
  file->owned_.assign(bytes.begin(), bytes.end());
  file->base_ = file->owned_.data();
  file->size_ = file->owned_.size();
  FF_RETURN_IF_ERROR(file->ParseImage());
  return file;
}

absl::Status SafetensorsFile::ParseImage() {
  const std::string& file = path_;
  if (size_ < 8) {
    return Invalid(file,
                   absl::StrCat("too small (", size_, " bytes) for the 8-byte header length"));
  }
  const uint64_t header_size = LoadUnaligned<uint64_t>(base_);
  if (header_size > kMaxHeaderBytes) {
    return Invalid(file, absl::StrCat("header length ", header_size, " exceeds the ",
                                      kMaxHeaderBytes, "-byte limit"));
  }
  if (header_size > size_ - 8) {
    return Invalid(file, absl::StrCat("header length ", header_size, " runs past the end of the ",
                                      size_, "-byte file"));
  }
  std::string_view header_text(reinterpret_cast<const char*>(base_ + 8), header_size);
  FF_ASSIGN_OR_RETURN(nlohmann::json header, ParseStrictJson(header_text, file));
  if (!header.is_object()) return Invalid(file, "header is not a JSON object");

  const std::byte* data_begin = base_ + 8 + header_size;
  const uint64_t data_size = size_ - 8 - header_size;
  std::vector<ParsedEntry> entries;
  entries.reserve(header.size());
  for (const auto& [name, entry] : header.items()) {
    if (name == kMetadataKey) {
      FF_ASSIGN_OR_RETURN(metadata_, ParseMetadata(entry, file));
      continue;
    }
    FF_ASSIGN_OR_RETURN(ParsedEntry parsed, ParseEntry(name, entry, file, data_size));
    entries.push_back(std::move(parsed));
  }

  // Safetensors requires the tensors to tile the data region exactly: no overlaps, no holes.
  std::sort(entries.begin(), entries.end(), [](const ParsedEntry& a, const ParsedEntry& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  uint64_t covered_until = 0;
  const std::string* previous = nullptr;
  for (const ParsedEntry& entry : entries) {
    if (entry.begin < covered_until) {
      return InvalidTensor(file, entry.info.name,
                           absl::StrCat("data overlaps tensor '", *previous, "'"));
    }
    if (entry.begin > covered_until) {
      return InvalidTensor(file, entry.info.name,
                           absl::StrCat("hole of ", entry.begin - covered_until,
                                        " unused bytes before its data at offset ", entry.begin));
    }
    covered_until = entry.end;
    previous = &entry.info.name;
  }
  if (covered_until != data_size) {
    return Invalid(file,
                   absl::StrCat(data_size - covered_until, " unused bytes after the last tensor",
                                previous ? absl::StrCat(" '", *previous, "'") : ""));
  }

  tensors_.clear();
  index_.clear();
  tensors_.reserve(entries.size());
  for (ParsedEntry& entry : entries) {
    entry.info.data = std::span<const std::byte>(data_begin + entry.begin, entry.end - entry.begin);
    index_.emplace(entry.info.name, tensors_.size());
    tensors_.push_back(std::move(entry.info));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TensorInfo>> ReadSafetensorsHeader(const std::filesystem::path& path) {
  const std::string file = path.string();
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(file, ": cannot open"));
  std::byte length_bytes[8];
  if (!in.read(reinterpret_cast<char*>(length_bytes), sizeof(length_bytes))) {
    return Invalid(file, "too small for the 8-byte header length");
  }
  const uint64_t header_size = LoadUnaligned<uint64_t>(length_bytes);
  if (header_size > kMaxHeaderBytes) {
    return Invalid(file, absl::StrCat("header length ", header_size, " exceeds the ",
                                      kMaxHeaderBytes, "-byte limit"));
  }
  std::string header_text(header_size, '\0');
  if (!in.read(header_text.data(), static_cast<std::streamsize>(header_size))) {
    return Invalid(file,
                   absl::StrCat("header length ", header_size, " runs past the end of the file"));
  }
  FF_ASSIGN_OR_RETURN(nlohmann::json header, ParseStrictJson(header_text, file));
  if (!header.is_object()) return Invalid(file, "header is not a JSON object");
  std::vector<ParsedEntry> entries;
  for (const auto& [name, entry] : header.items()) {
    if (name == kMetadataKey) continue;
    FF_ASSIGN_OR_RETURN(ParsedEntry parsed,
                        ParseEntry(name, entry, file, std::numeric_limits<uint64_t>::max()));
    entries.push_back(std::move(parsed));
  }
  std::sort(entries.begin(), entries.end(), [](const ParsedEntry& a, const ParsedEntry& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  std::vector<TensorInfo> tensors;
  tensors.reserve(entries.size());
  uint64_t covered_until = 0;
  for (ParsedEntry& entry : entries) {
    if (entry.begin < covered_until) {
      return InvalidTensor(file, entry.info.name,
                           absl::StrCat("data overlaps tensor '", tensors.back().name, "'"));
    }
    covered_until = entry.end;
    tensors.push_back(std::move(entry.info));
  }
  return tensors;
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<Tensor> ToFloat32(const TensorInfo& info) {
  const int64_t count = info.num_elements();
  if (info.data.size() != static_cast<uint64_t>(count) * DTypeSize(info.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat(info.file, ": tensor '", info.name, "': data size does not match its shape"));
  }
  Tensor result(info.shape);
  ConvertToFloat32(info.dtype, info.data.data(), count, result.data());
  return result;
}

absl::StatusOr<Tensor> ToFloat32Rows(const TensorInfo& info, int64_t row_begin, int64_t row_end) {
  if (info.shape.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(info.file, ": tensor '", info.name, "': a scalar has no rows"));
  }
  const int64_t rows = info.shape[0];
  if (row_begin < 0 || row_begin > row_end || row_end > rows) {
    return absl::InvalidArgumentError(
        absl::StrCat(info.file, ": tensor '", info.name, "': rows [", row_begin, ", ", row_end,
                     ") out of range for shape ", FormatShape(info.shape)));
  }
  const int64_t count = info.num_elements();
  if (info.data.size() != static_cast<uint64_t>(count) * DTypeSize(info.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat(info.file, ": tensor '", info.name, "': data size does not match its shape"));
  }
  const int64_t row_elements = rows == 0 ? 0 : count / rows;
  std::vector<int64_t> shape = info.shape;
  shape[0] = row_end - row_begin;
  Tensor result(std::move(shape));
  const size_t element_size = DTypeSize(info.dtype);
  ConvertToFloat32(info.dtype, info.data.data() + row_begin * row_elements * element_size,
                   (row_end - row_begin) * row_elements, result.data());
  return result;
}

}  // namespace flatfleet
