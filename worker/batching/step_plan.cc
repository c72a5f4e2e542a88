#include "worker/batching/step_plan.h"

#include <cstring>
#include <string_view>

#include "absl/strings/str_format.h"

namespace flatfleet::engine {
namespace {

constexpr char kMagic[4] = {'F', 'F', 'S', 'P'};
constexpr uint32_t kVersion = 2;  // 2: chunks carry fork_of

void PutU64(std::string& out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

void PutU32(std::string& out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// Reads fields in order; the first shortfall or bad value sticks as the error.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  size_t remaining() const { return bytes_.size() - at_; }

  uint64_t U64(const char* what) { return Little(8, what); }
  uint32_t U32(const char* what) { return static_cast<uint32_t>(Little(4, what)); }
  bool Bool(const char* what) {
    const uint64_t value = Little(1, what);
    if (value > 1) Fail(absl::StrFormat("%s is %d, not 0 or 1", what, value));
    return value == 1;
  }
  // An element count, checked against the bytes left so garbage cannot ask for huge buffers.
  size_t Count(size_t element_bytes, const char* what) {
    const uint64_t count = Little(8, what);
    if (ok() && count > remaining() / element_bytes) {
      Fail(absl::StrFormat("%s of %d exceeds the %d bytes left", what, count, remaining()));
      return 0;
    }
    return ok() ? static_cast<size_t>(count) : 0;
  }
  void Fail(const std::string& message) {
    if (error_.empty()) error_ = message;
  }

 private:
  uint64_t Little(int width, const char* what) {
    if (!ok()) return 0;
    if (remaining() < static_cast<size_t>(width)) {
      Fail(absl::StrFormat("truncated at byte %d reading %s", at_, what));
      return 0;
    }
    uint64_t value = 0;
    for (int i = 0; i < width; ++i) {
      value |= static_cast<uint64_t>(static_cast<unsigned char>(bytes_[at_ + i])) << (8 * i);
    }
    at_ += width;
    return value;
  }

  std::string_view bytes_;
  size_t at_ = 0;
  std::string error_;
};

void PutIds(std::string& out, const std::vector<SequenceId>& ids) {
  PutU64(out, ids.size());
  for (SequenceId id : ids) PutU64(out, static_cast<uint64_t>(id));
}

std::vector<SequenceId> ReadIds(Reader& reader, const char* what) {
  std::vector<SequenceId> ids(reader.Count(8, what));
  for (SequenceId& id : ids) id = static_cast<SequenceId>(reader.U64(what));
  return ids;
}

}  // namespace

int64_t StepPlan::num_tokens() const {
  int64_t total = 0;
  for (const PlannedChunk& chunk : chunks) total += static_cast<int64_t>(chunk.tokens.size());
  return total;
}

std::string SerializeStepPlan(const StepPlan& plan) {
  std::string out(kMagic, sizeof(kMagic));
  PutU32(out, kVersion);
  PutU64(out, plan.step);
  PutIds(out, plan.released);
  PutIds(out, plan.preempted);
  PutU64(out, plan.chunks.size());
  for (const PlannedChunk& chunk : plan.chunks) {
    PutU64(out, static_cast<uint64_t>(chunk.sequence));
    PutU64(out, static_cast<uint64_t>(chunk.begin));
    out.push_back(chunk.new_sequence ? 1 : 0);
    out.push_back(chunk.sample ? 1 : 0);
    PutU64(out, static_cast<uint64_t>(chunk.fork_of));
    PutU64(out, chunk.tokens.size());
    for (int32_t token : chunk.tokens) PutU32(out, static_cast<uint32_t>(token));
  }
  return out;
}

absl::StatusOr<StepPlan> ParseStepPlan(std::string_view bytes) {
  if (bytes.size() < sizeof(kMagic) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError("step plan: missing the FFSP header");
  }
  Reader reader(bytes.substr(sizeof(kMagic)));
  const uint32_t version = reader.U32("version");
  if (reader.ok() && version != kVersion) {
    return absl::InvalidArgumentError(
        absl::StrFormat("step plan: version %d, this build reads %d", version, kVersion));
  }
  StepPlan plan;
  plan.step = reader.U64("step");
  plan.released = ReadIds(reader, "released ids");
  plan.preempted = ReadIds(reader, "preempted ids");
  // The smallest encoded chunk is 34 bytes (ids, flags, fork and an empty token count).
  plan.chunks.resize(reader.Count(34, "chunk count"));
  for (PlannedChunk& chunk : plan.chunks) {
    chunk.sequence = static_cast<SequenceId>(reader.U64("chunk sequence"));
    chunk.begin = static_cast<int64_t>(reader.U64("chunk begin"));
    chunk.new_sequence = reader.Bool("new_sequence flag");
    chunk.sample = reader.Bool("sample flag");
    chunk.fork_of = static_cast<SequenceId>(reader.U64("fork_of"));
    chunk.tokens.resize(reader.Count(4, "token count"));
    for (int32_t& token : chunk.tokens) token = static_cast<int32_t>(reader.U32("token"));
    if (reader.ok() && (chunk.begin < 0 || chunk.tokens.empty())) {
      reader.Fail(absl::StrFormat("chunk of sequence %d has begin %d and %d tokens", chunk.sequence,
                                  chunk.begin, chunk.tokens.size()));
    }
    // Only a new sequence forks, from another one (ids are never negative but for kNoFork).
    if (reader.ok() && chunk.fork_of != kNoFork &&
        (!chunk.new_sequence || chunk.fork_of < 0 || chunk.fork_of == chunk.sequence)) {
      reader.Fail(
          absl::StrFormat("chunk of sequence %d forks from %d", chunk.sequence, chunk.fork_of));
    }
  }
  if (reader.ok() && reader.remaining() != 0) {
    reader.Fail(absl::StrFormat("%d trailing bytes", reader.remaining()));
  }
  if (!reader.ok()) return absl::InvalidArgumentError("step plan: " + reader.error());
  return plan;
}

}  // namespace flatfleet::engine
