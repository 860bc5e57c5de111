#include "tokenizer.h"

#include <fstream>
#include <iterator>
#include <stdexcept>

namespace captiongate::moonshine {

Tokenizer::Tokenizer(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open the Moonshine tokenizer " + path);
  const std::vector<unsigned char> b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t i = 0;
  while (i < b.size()) {
    size_t n = b[i++];
    if (n >= 128) {
      if (i >= b.size()) throw std::runtime_error(path + ": truncated (a two-byte length at the end of the file)");
      n = static_cast<size_t>(b[i++]) * 128 + (n - 128);
    }
    if (n > b.size() - i)
      throw std::runtime_error(path + ": truncated (entry " + std::to_string(pieces_.size()) + " of " + std::to_string(n) +
                               " bytes runs past the end)");
    pieces_.emplace_back(reinterpret_cast<const char*>(b.data() + i), n);
    i += n;
  }
  if (pieces_.size() < 259) throw std::runtime_error(path + ": only " + std::to_string(pieces_.size()) + " tokens (not a Moonshine tokenizer)");
  special_.resize(pieces_.size());
  for (size_t k = 0; k < pieces_.size(); ++k) {
    const std::string& p = pieces_[k];
    special_[k] = p.size() > 2 && p.front() == '<' && p.back() == '>';
  }
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string s;
  for (int64_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= pieces_.size()) continue;  // upstream throws; never produced by argmax
    if (special_[id]) continue;
    s += pieces_[id];
  }
  static const std::string kSpace = "\xE2\x96\x81";
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, kSpace.size(), kSpace) == 0) {
      out += ' ';
      i += kSpace.size();
    } else {
      out += s[i++];
    }
  }
  const char* ws = " \t\n\r\f\v";
  const size_t a = out.find_first_not_of(ws);
  if (a == std::string::npos) return std::string();
  return out.substr(a, out.find_last_not_of(ws) - a + 1);
}

}  // namespace captiongate::moonshine
