#include "kernels/cuda/moe_scratch.h"

#include "absl/strings/str_cat.h"

namespace flatfleet::cuda {
namespace {

constexpr size_t kAlignment = 256;

size_t RoundUp(size_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

bool Valid(const MoeScratchShape& s) {
  return s.rows > 0 && s.top_k > 0 && s.num_experts > 0 && s.hidden > 0 && s.intermediate > 0;
}

// Walks the arrays in a fixed order; with a null base it only measures.
class Carver {
 public:
  explicit Carver(char* base) : base_(base) {}
  template <typename T>
  T* Take(int64_t count) {
    T* pointer = base_ == nullptr ? nullptr : reinterpret_cast<T*>(base_ + used_);
    used_ += RoundUp(static_cast<size_t>(count) * sizeof(T));
    return pointer;
  }
  size_t used() const { return used_; }

 private:
  char* base_;
  size_t used_ = 0;
};

MoeScratch Carve(const MoeScratchShape& s, Carver& carver) {
  const int64_t permuted = s.rows * s.top_k;
  MoeScratch scratch;
  scratch.expert_ids = carver.Take<int32_t>(permuted);
  scratch.expert_weights = carver.Take<float>(permuted);
  scratch.expert_offsets = carver.Take<int32_t>(s.num_experts + 1);
  scratch.permuted_source_row = carver.Take<int32_t>(permuted);
  scratch.inverse_permutation = carver.Take<int32_t>(permuted);
  scratch.xp = carver.Take<__nv_bfloat16>(permuted * s.hidden);
  scratch.gate_up = carver.Take<__nv_bfloat16>(permuted * 2 * s.intermediate);
  scratch.activated = carver.Take<__nv_bfloat16>(permuted * s.intermediate);
  scratch.down = carver.Take<__nv_bfloat16>(permuted * s.hidden);
  return scratch;
}

}  // namespace

size_t MoeScratchBytes(const MoeScratchShape& shape) {
  if (!Valid(shape)) return 0;
  Carver measure(nullptr);
  Carve(shape, measure);
  return measure.used();
}

absl::StatusOr<MoeScratch> CarveMoeScratch(const MoeScratchShape& shape, void* scratch,
                                           size_t scratch_bytes) {
  constexpr char kName[] = "MoE scratch";
  if (!Valid(shape)) {
    return absl::InvalidArgumentError(absl::StrCat(
        kName, ": bad shape rows = ", shape.rows, ", top_k = ", shape.top_k, ", num_experts = ",
        shape.num_experts, ", hidden = ", shape.hidden, ", intermediate = ", shape.intermediate));
  }
  if (scratch == nullptr)
    return absl::InvalidArgumentError(absl::StrCat(kName, ": scratch is null"));
  if (reinterpret_cast<uintptr_t>(scratch) % kAlignment != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": scratch must be ", kAlignment, "-byte aligned"));
  }
  const size_t needed = MoeScratchBytes(shape);
  if (scratch_bytes < needed) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": scratch_bytes = ", scratch_bytes,
                                                   " is less than the ", needed, " needed"));
  }
  Carver carver(static_cast<char*>(scratch));
  return Carve(shape, carver);
}

}  // namespace flatfleet::cuda
