// Reading only the header of a safetensors file: what it declares, without its data.
#pragma once

#include <filesystem>
#include <vector>

#include "absl/status/statusor.h"
#include "common/safetensors.h"

namespace flatfleet {

// The tensors a safetensors file declares (name, dtype, shape, file; `data` empty), read from its
// 8-byte length and JSON header alone: the data region need not be there (a header-only file
// describes a model without its weights). Each entry is validated as by SafetensorsFile::Open
// (known dtype, offsets matching the shape's byte size, no two tensors overlapping); errors name
// the file and the tensor.
absl::StatusOr<std::vector<TensorInfo>> ReadSafetensorsHeader(const std::filesystem::path& path);

}  // namespace flatfleet
