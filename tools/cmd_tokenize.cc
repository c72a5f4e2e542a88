// `flatfleet tokenize`: encode text with a model's tokenizer, or check a tokenizer against
// reference encodings (a JSON list of {"text", "ids"} as produced by HF tokenizers).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "tools/commands.h"

namespace flatfleet::tools {
namespace {

struct TokenizeOptions {
  std::string tokenizer_path;
  std::string text;
  std::string check_path;
  bool add_special_tokens = false;
  bool decode = false;
};

std::string JoinIds(const std::vector<int32_t>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) out += ' ';
    out += std::to_string(ids[i]);
  }
  return out;
}

int EncodeText(const tokenizer::Tokenizer& tok, const TokenizeOptions& options) {
  auto ids = tok.Encode(options.text, options.add_special_tokens);
  if (!ids.ok()) {
    std::cerr << "flatfleet tokenize: " << ids.status().message() << "\n";
    return 1;
  }
  std::cout << JoinIds(*ids) << "\n";
  if (options.decode) std::cout << tok.Decode(*ids) << "\n";
  return 0;
}

int CheckEncodings(const tokenizer::Tokenizer& tok, const TokenizeOptions& options) {
  std::ifstream in(options.check_path, std::ios::binary);
  if (!in) {
    std::cerr << "flatfleet tokenize: " << options.check_path << ": cannot open\n";
    return 2;
  }
  std::stringstream contents;
  contents << in.rdbuf();
  const nlohmann::json probes = nlohmann::json::parse(contents.str(), nullptr, false);
  if (probes.is_discarded() || !probes.is_array()) {
    std::cerr << "flatfleet tokenize: " << options.check_path
              << ": expected a JSON list of {\"text\", \"ids\"}\n";
    return 2;
  }
  size_t exact = 0;
  for (size_t i = 0; i < probes.size(); ++i) {
    const nlohmann::json& probe = probes[i];
    std::vector<int32_t> expected;
    bool well_formed = probe.is_object() && probe.contains("text") && probe["text"].is_string() &&
                       probe.contains("ids") && probe["ids"].is_array();
    if (well_formed) {
      for (const auto& id : probe["ids"]) {
        if (!id.is_number_integer()) {
          well_formed = false;
          break;
        }
        expected.push_back(id.get<int32_t>());
      }
    }
    if (!well_formed) {
      std::cerr << "flatfleet tokenize: " << options.check_path << ": entry [" << i
                << "] is not {\"text\": string, \"ids\": [int...]}\n";
      return 2;
    }
    const std::string text = probe["text"].get<std::string>();
    auto got = tok.Encode(text, options.add_special_tokens);
    if (got.ok() && *got == expected) {
      ++exact;
      continue;
    }
    std::cout << "mismatch: text=" << nlohmann::json(text).dump()
              << "\n  expected: " << JoinIds(expected) << "\n  got:      "
              << (got.ok() ? JoinIds(*got) : "error: " + std::string(got.status().message()))
              << "\n";
  }
  std::cout << exact << "/" << probes.size() << " exact\n";
  return exact == probes.size() ? 0 : 1;
}

int RunTokenize(const TokenizeOptions& options) {
  auto tok = tokenizer::LoadTokenizer(options.tokenizer_path);
  if (!tok.ok()) {
    std::cerr << "flatfleet tokenize: " << tok.status().message() << "\n";
    return 2;
  }
  if (!options.check_path.empty()) return CheckEncodings(**tok, options);
  return EncodeText(**tok, options);
}

}  // namespace

CommandRunner RegisterTokenizeCommand(CLI::App& app) {
  auto options = std::make_shared<TokenizeOptions>();
  CLI::App* command =
      app.add_subcommand("tokenize", "Encode text with a tokenizer, or check reference encodings");
  command
      ->add_option("--tokenizer", options->tokenizer_path,
                   "tokenizer.json / tokenizer.model, or a directory holding one")
      ->required();
  auto* text = command->add_option("--text", options->text, "text to encode");
  auto* check = command->add_option("--check", options->check_path,
                                    "JSON list of {text, ids}; prints N/M exact and mismatches");
  text->excludes(check);
  command->add_flag("--add-special-tokens", options->add_special_tokens,
                    "add the tokenizer's special prefix/suffix (e.g. BOS)");
  command->add_flag("--decode", options->decode, "also print the decoded ids");
  return [options, text, check] {
    if (text->count() == 0 && check->count() == 0) {
      std::cerr << "flatfleet tokenize: give --text or --check\n";
      return 2;
    }
    return RunTokenize(*options);
  };
}

}  // namespace flatfleet::tools
