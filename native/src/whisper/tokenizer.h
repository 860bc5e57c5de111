// Whisper's byte-level BPE vocabulary (vocabulary.txt, one token per line,
// in GPT-2's byte-to-unicode spelling) and its special token ids.
#pragma once

#include <string>
#include <vector>

namespace captiongate::whisper {

struct SpecialTokens {
  int eot = 50257;
  int sot = 50258;
  int english = 50259;
  int transcribe = 50359;
  int noSpeech = 50362;      // <|nocaptions|> in this vocabulary
  int noTimestamps = 50363;
  int timestampBegin = 50364;  // <|0.00|>, then one per 20 ms
};

class Tokenizer {
 public:
  explicit Tokenizer(const std::string& vocabularyPath);
  size_t size() const { return tokens_.size(); }
  // Text of text tokens (ids below eot); special tokens are skipped.
  std::string decode(const std::vector<int>& ids) const;
  const std::string& piece(int id) const { return tokens_.at(id); }
  const SpecialTokens& special() const { return special_; }

 private:
  std::vector<std::string> tokens_;  // raw bytes of each token
  SpecialTokens special_;
};

}  // namespace captiongate::whisper
