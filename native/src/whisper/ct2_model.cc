#include "ct2_model.h"

#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace captiongate::whisper {

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

float halfToFloat(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        exp--;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

namespace {

class Reader {
 public:
  Reader(const std::string& path, std::vector<char> data) : path_(path), data_(std::move(data)) {}
  template <typename T>
  T read() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str() {
    auto n = read<uint16_t>();
    need(n);
    std::string s(data_.data() + pos_, n);
    pos_ += n;
    if (!s.empty() && s.back() == '\0') s.pop_back();
    return s;
  }
  const char* bytes(size_t n) {
    need(n);
    const char* p = data_.data() + pos_;
    pos_ += n;
    return p;
  }
  size_t pos() const { return pos_; }
  size_t size() const { return data_.size(); }

 private:
  void need(size_t n) {
    if (pos_ + n > data_.size()) throw std::runtime_error(path_ + ": truncated CTranslate2 model (is the download complete?)");
  }
  std::string path_;
  std::vector<char> data_;
  size_t pos_ = 0;
};

}  // namespace

Ct2Model::Ct2Model(const std::string& path) : path_(path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot open the Whisper model. Run scripts/fetch-whisper-model.mjs (scripts/setup.sh does) to install it.");
  std::vector<char> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  Reader r(path, std::move(data));
  const auto version = r.read<int32_t>();
  if (version < 5 || version > 6) throw std::runtime_error(path + ": unsupported CTranslate2 binary version " + std::to_string(version));
  spec_ = r.str();
  revision_ = r.read<int32_t>();
  const auto nvars = r.read<uint32_t>();
  for (uint32_t i = 0; i < nvars; i++) {
    Tensor t;
    const std::string name = r.str();
    const auto rank = r.read<uint8_t>();
    for (int d = 0; d < rank; d++) t.shape.push_back(r.read<uint32_t>());
    const auto type = r.read<uint8_t>();
    const auto nbytes = r.read<uint32_t>();
    const char* p = r.bytes(nbytes);
    const int64_t n = t.numel();
    switch (type) {
      case 0:  // float32
        if (nbytes != n * 4) throw std::runtime_error(path + ": bad size for " + name);
        t.data.resize(n);
        std::memcpy(t.data.data(), p, nbytes);
        t.isFloat = true;
        break;
      case 4:  // float16
        if (nbytes != n * 2) throw std::runtime_error(path + ": bad size for " + name);
        t.data.resize(n);
        for (int64_t j = 0; j < n; j++) {
          uint16_t h;
          std::memcpy(&h, p + 2 * j, 2);
          t.data[j] = halfToFloat(h);
        }
        t.isFloat = true;
        break;
      case 1:
        t.scalar = static_cast<int8_t>(p[0]);
        break;
      case 2: {
        int16_t v;
        std::memcpy(&v, p, 2);
        t.scalar = v;
        break;
      }
      case 3: {
        int32_t v;
        std::memcpy(&v, p, 4);
        t.scalar = v;
        break;
      }
      default:
        throw std::runtime_error(path + ": unsupported tensor type " + std::to_string(type) + " for " + name +
                                 " (quantized models are not supported; use the float16 model)");
    }
    tensors_.emplace(name, std::move(t));
  }
  const auto naliases = r.read<uint32_t>();
  for (uint32_t i = 0; i < naliases; i++) {
    std::string alias = r.str();
    std::string target = r.str();
    aliases_.emplace(std::move(alias), std::move(target));
  }
}

bool Ct2Model::has(const std::string& name) const {
  return tensors_.count(name) || aliases_.count(name);
}

const Tensor& Ct2Model::get(const std::string& name, const std::vector<int64_t>& shape) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    auto a = aliases_.find(name);
    if (a != aliases_.end()) it = tensors_.find(a->second);
  }
  if (it == tensors_.end()) throw std::runtime_error(path_ + ": missing tensor " + name + " (not a Whisper model?)");
  if (!shape.empty() && it->second.shape != shape) {
    std::ostringstream os;
    os << path_ << ": tensor " << name << " has shape [";
    for (size_t i = 0; i < it->second.shape.size(); i++) os << (i ? "," : "") << it->second.shape[i];
    os << "], expected [";
    for (size_t i = 0; i < shape.size(); i++) os << (i ? "," : "") << shape[i];
    os << "]";
    throw std::runtime_error(os.str());
  }
  return it->second;
}

int64_t Ct2Model::scalar(const std::string& name) const { return get(name).scalar; }

void Ct2Model::release(const std::string& name) {
  auto it = tensors_.find(name);
  if (it != tensors_.end()) std::vector<float>().swap(it->second.data);
}

std::vector<std::string> Ct2Model::names() const {
  std::vector<std::string> v;
  for (auto& kv : tensors_) v.push_back(kv.first);
  return v;
}

}  // namespace captiongate::whisper
