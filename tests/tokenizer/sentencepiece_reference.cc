#include "tests/tokenizer/sentencepiece_reference.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fstream>
#include <random>

namespace flatfleet::tokenizer::testing {

std::filesystem::path TrainTinySentencePieceModel(const std::filesystem::path& dir,
                                                  std::string& error) {
  const char* words[] = {"the",   "quick", "brown", "fox",   "jumps", "over",  "lazy",  "dog",
                         "token", "model", "piece", "sense", "hello", "world", "again", "river"};
  std::mt19937 rng(7);
  const auto corpus = dir / "corpus.txt";
  {
    std::ofstream out(corpus);
    for (int line = 0; line < 2000; ++line) {
      const int length = 3 + rng() % 8;
      for (int w = 0; w < length; ++w) out << (w ? " " : "") << words[rng() % 16];
      out << (line % 7 == 0 ? ", 42.\n" : ".\n");
    }
  }
  const auto prefix = dir / "tiny";
  const auto status = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + corpus.string() + " --model_prefix=" + prefix.string() +
      " --vocab_size=100 --model_type=unigram --character_coverage=1.0"
      " --hard_vocab_limit=false --num_threads=1 --minloglevel=2");
  if (!status.ok()) {
    error = status.ToString();
    return {};
  }
  return prefix.string() + ".model";
}

std::vector<int> ReferenceSentencePieceIds(const std::filesystem::path& model,
                                           const std::string& text) {
  sentencepiece::SentencePieceProcessor processor;
  if (!processor.Load(model.string()).ok()) return {};
  std::vector<int> ids;
  if (!processor.Encode(text, &ids).ok()) return {};
  return ids;
}

}  // namespace flatfleet::tokenizer::testing
