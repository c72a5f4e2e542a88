// The narrow interface to Debian's libsentencepiece, which lives in a separately loaded module
// (sentencepiece_module/): libsentencepiece embeds its own protobuf-lite 3.14 and exports it, so
// linked into a program that also uses libprotobuf 3.21 (every gRPC program here) one of the two
// breaks — protobuf's initialisers crash, or sentencepiece refuses to load models. The module is
// opened with dlopen(RTLD_LOCAL | RTLD_DEEPBIND): sentencepiece then binds to its own protobuf
// copy and none of its symbols enter the program's global scope.
//
// This interface uses the standard library only (the sentencepiece headers also declare their
// own absl::string_view, which collides with Debian's Abseil).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace flatfleet::tokenizer {

class SentencePieceBridge {
 public:
  // Opens the module and loads the model; nullptr (with `error` set) if either fails.
  static std::unique_ptr<SentencePieceBridge> Load(const std::string& path, std::string& error);
  virtual ~SentencePieceBridge() = default;

  virtual bool Encode(std::string_view text, std::vector<int>& ids, std::string& error) const = 0;
  virtual bool Decode(const std::vector<int>& ids, std::string& text) const = 0;
  virtual int piece_size() const = 0;
  virtual int PieceToId(std::string_view piece) const = 0;
  virtual std::string IdToPiece(int id) const = 0;
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
  virtual bool IsControl(int id) const = 0;
  virtual bool IsUnknown(int id) const = 0;
};

// The module's file name, and the C symbol it exports:
//   SentencePieceBridge* flatfleet_sentencepiece_load(const char* path, std::string* error);
inline constexpr char kSentencePieceModuleName[] = "libflatfleet_sentencepiece.so";
inline constexpr char kSentencePieceLoadSymbol[] = "flatfleet_sentencepiece_load";
using SentencePieceLoadFunction = SentencePieceBridge* (*)(const char* path, std::string* error);

}  // namespace flatfleet::tokenizer
