#include "tokenizer.h"

#include <fstream>
#include <stdexcept>

namespace captiongate::whisper {

namespace {

// GPT-2's bytes_to_unicode, inverted: code point -> byte.
std::vector<int> unicodeToByte() {
  std::vector<int> inv(512, -1);
  std::vector<int> bs;
  for (int b = '!'; b <= '~'; b++) bs.push_back(b);
  for (int b = 0xA1; b <= 0xAC; b++) bs.push_back(b);
  for (int b = 0xAE; b <= 0xFF; b++) bs.push_back(b);
  std::vector<int> cs = bs;
  int n = 0;
  for (int b = 0; b < 256; b++) {
    bool found = false;
    for (int x : bs) found = found || x == b;
    if (!found) {
      bs.push_back(b);
      cs.push_back(256 + n++);
    }
  }
  for (size_t i = 0; i < bs.size(); i++) inv[cs[i]] = bs[i];
  return inv;
}

// Decodes one UTF-8 line into code points.
std::vector<int> codepoints(const std::string& s) {
  std::vector<int> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    int cp, len;
    if (c < 0x80) cp = c, len = 1;
    else if ((c >> 5) == 6) cp = c & 0x1f, len = 2;
    else if ((c >> 4) == 14) cp = c & 0x0f, len = 3;
    else cp = c & 0x07, len = 4;
    for (int k = 1; k < len && i + k < s.size(); k++) cp = (cp << 6) | (s[i + k] & 0x3f);
    out.push_back(cp);
    i += len;
  }
  return out;
}

}  // namespace

Tokenizer::Tokenizer(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error(path + ": cannot open the Whisper vocabulary");
  const auto inv = unicodeToByte();
  std::string line;
  while (std::getline(f, line)) {
    // Bounded work on a damaged file: no more lines than the vocabulary has,
    // no line longer than a token can be.
    if (tokens_.size() >= 51865)
      throw std::runtime_error(path + ": more than 51,865 tokens (not Whisper's multilingual vocabulary, or damaged; reinstall with scripts/fetch-whisper-model.mjs)");
    if (line.size() > 1024)
      throw std::runtime_error(path + ": line " + std::to_string(tokens_.size() + 1) + " is " + std::to_string(line.size()) +
                               " bytes long (damaged vocabulary; reinstall with scripts/fetch-whisper-model.mjs)");
    if (line.size() > 2 && line[0] == '<' && line[1] == '|') {
      tokens_.push_back(line);  // special tokens keep their spelling
      continue;
    }
    std::string bytes;
    for (int cp : codepoints(line)) {
      if (cp >= 0 && cp < static_cast<int>(inv.size()) && inv[cp] >= 0) bytes.push_back(static_cast<char>(inv[cp]));
    }
    tokens_.push_back(bytes);
  }
  if (tokens_.size() != 51865) {
    throw std::runtime_error(path + ": expected 51,865 tokens (Whisper multilingual), found " + std::to_string(tokens_.size()) +
                             " (truncated or damaged? reinstall with scripts/fetch-whisper-model.mjs)");
  }
  if (tokens_[special_.sot] != "<|startoftranscript|>" || tokens_[special_.noTimestamps] != "<|notimestamps|>" ||
      tokens_[special_.timestampBegin] != "<|0.00|>") {
    throw std::runtime_error(path + ": special tokens are not where Whisper's multilingual vocabulary has them");
  }
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  std::string out;
  for (int id : ids) {
    if (id >= 0 && id < special_.eot) out += tokens_[id];
  }
  return out;
}

}  // namespace captiongate::whisper
