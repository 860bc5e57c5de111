// Moonshine's tokenizer.bin: token id → UTF-8 text.
//
// The file is a sequence of entries, entry i being token i: a length L, then
// L bytes. L < 128 takes one byte; otherwise two, b0 >= 128 and b1 with
// L = b1 * 128 + (b0 - 128). An empty entry is an unused id. Pieces are raw
// UTF-8 with U+2581 ("▁") standing for a space; ids 3..258 are the 256 raw
// bytes (byte fallback). Decoding follows upstream BinTokenizer::
// tokens_to_text(skipSpecials = true): drop pieces that look like <...>,
// concatenate the bytes, turn "▁" into ' ', trim ASCII whitespace.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace captiongate::moonshine {

class Tokenizer {
 public:
  // Throws std::runtime_error naming the file and the problem.
  explicit Tokenizer(const std::string& path);
  std::string decode(const std::vector<int64_t>& ids) const;
  size_t size() const { return pieces_.size(); }

 private:
  std::vector<std::string> pieces_;
  std::vector<bool> special_;
};

}  // namespace captiongate::moonshine
