// Reading safetensors files: memory-mapped, validated, single file or sharded via
// `model.safetensors.index.json`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "common/tensor.h"

namespace flatfleet {

// One tensor inside a safetensors file. `data` points into the mapped file.
struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;
  // The file it came from (for error messages).
  std::string file;

  int64_t num_elements() const { return Tensor::NumElements(shape); }
};

// One safetensors file. Every header field is validated on open: header length within the
// file, well-formed JSON, known dtypes, offsets in range, not overlapping, and byte sizes
// matching shapes. Errors name the file and the tensor.
class SafetensorsFile {
 public:
  // Memory-maps `path` (read-only).
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::filesystem::path& path);
  // Parses a file image held in memory (used by tests and fuzzing); the bytes are copied.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Parse(std::span<const std::byte> bytes,
                                                                std::string display_name);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Tensors in the order of their data offsets.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // nullptr when absent.
  const TensorInfo* Find(std::string_view name) const;
  // The optional "__metadata__" string map.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  absl::Status ParseImage();

  std::string path_;
  const std::byte* base_ = nullptr;  // whole file image
  size_t size_ = 0;
  bool mapped_ = false;
  std::vector<std::byte> owned_;  // when parsed from memory
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

// Converts any float or integer tensor to float32 (bf16/f16 widened exactly).
absl::StatusOr<Tensor> ToFloat32(const TensorInfo& info);
// Rows [row_begin, row_end) of the first dimension, converted to float32 (for tensor-parallel
// slices of row-major weights).
absl::StatusOr<Tensor> ToFloat32Rows(const TensorInfo& info, int64_t row_begin, int64_t row_end);

// All tensors of a checkpoint directory: `model.safetensors`, or the shards listed by
// `model.safetensors.index.json` (each shard validated; every tensor the index names must
// exist in its shard), or a single given .safetensors file.
class WeightStore {
 public:
  static absl::StatusOr<std::unique_ptr<WeightStore>> Open(const std::filesystem::path& path);

  // nullptr when absent.
  const TensorInfo* Find(std::string_view name) const;
  // Error names the tensor and the checkpoint when absent.
  absl::StatusOr<const TensorInfo*> Get(std::string_view name) const;
  // Get + ToFloat32, checking the expected shape (error names the tensor and both shapes).
  absl::StatusOr<Tensor> LoadF32(std::string_view name, const std::vector<int64_t>& expected_shape) const;
  std::vector<std::string> TensorNames() const;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorInfo*, std::less<>> tensors_;
};

// A tensor to be written: raw little-endian bytes of `dtype` with `shape`.
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
};
TensorToWrite FromFloat32(std::string name, const Tensor& tensor, DType dtype = DType::kF32);

// Writes a safetensors file (written to a temporary name, then renamed into place).
absl::Status WriteSafetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace flatfleet
