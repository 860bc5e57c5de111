#include "ct2_model.h"

#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace captiongate::whisper {

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;  // checked when the tensor was read
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

// Bounds-checked reads over the whole file: every size read from the file is
// checked against what is left before it is used.
class Reader {
 public:
  Reader(const std::string& path, std::vector<char> data) : path_(path), data_(std::move(data)) {}
  template <typename T>
  T read() {
    need(sizeof(T), "a field");
    T v;
    std::memcpy(&v, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str(const char* what) {
    const auto n = read<uint16_t>();
    need(n, what);
    std::string s(data_.data() + pos_, n);
    pos_ += n;
    if (!s.empty() && s.back() == '\0') s.pop_back();
    return s;
  }
  const char* bytes(size_t n, const std::string& what) {
    need(n, what);
    const char* p = data_.data() + pos_;
    pos_ += n;
    return p;
  }
  size_t left() const { return data_.size() - pos_; }
  [[noreturn]] void corrupt(const std::string& what) const {
    throw std::runtime_error(path_ + ": corrupt CTranslate2 model at byte " + std::to_string(pos_) + ": " + what +
                             " (reinstall it with scripts/fetch-whisper-model.mjs)");
  }
  // A count that cannot fit in what is left: a cut file, or a damaged count.
  void fits(uint64_t count, size_t minBytes, const char* what) const {
    if (count > left() / minBytes)
      throw std::runtime_error(path_ + ": truncated or corrupt CTranslate2 model at byte " + std::to_string(pos_) + ": " +
                               std::to_string(count) + " " + what + " cannot fit in the " + std::to_string(left()) +
                               " bytes left (reinstall it with scripts/fetch-whisper-model.mjs)");
  }

 private:
  void need(size_t n, const std::string& what) {
    if (n > left())
      throw std::runtime_error(path_ + ": truncated CTranslate2 model: " + what + " needs " + std::to_string(n) +
                               " bytes at byte " + std::to_string(pos_) + ", the file has " + std::to_string(left()) +
                               " left (is the download complete? reinstall with scripts/fetch-whisper-model.mjs)");
  }
  std::string path_;
  std::vector<char> data_;
  size_t pos_ = 0;
};

// Bytes per element of CTranslate2's DataType (0 float32, 1 int8, 2 int16,
// 3 int32, 4 float16); 0 for the types we do not read.
size_t typeSize(uint8_t type) {
  switch (type) {
    case 0: return 4;
    case 1: return 1;
    case 2: return 2;
    case 3: return 4;
    case 4: return 2;
    default: return 0;
  }
}

std::vector<char> readFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f)
    throw std::runtime_error(path + ": cannot open the Whisper model. Run scripts/fetch-whisper-model.mjs (scripts/setup.sh does) to install it.");
  const std::streamoff size = f.tellg();
  if (size < 0) throw std::runtime_error(path + ": cannot read the Whisper model");
  std::vector<char> data(static_cast<size_t>(size));
  f.seekg(0);
  if (size > 0 && !f.read(data.data(), size)) throw std::runtime_error(path + ": cannot read the Whisper model");
  return data;
}

}  // namespace

Ct2Model::Ct2Model(const std::string& path) : path_(path) {
  Reader r(path, readFile(path));
  const auto version = r.read<int32_t>();
  if (version < 5 || version > 6) throw std::runtime_error(path + ": unsupported CTranslate2 binary version " + std::to_string(version));
  spec_ = r.str("the spec name");
  revision_ = r.read<int32_t>();
  const auto nvars = r.read<uint32_t>();
  // Each variable takes at least 8 bytes (name length, rank, type, size).
  r.fits(nvars, 8, "variables");
  for (uint32_t i = 0; i < nvars; i++) {
    Tensor t;
    const std::string name = r.str("a variable name");
    if (name.empty()) r.corrupt("variable " + std::to_string(i) + " has an empty name");
    const auto rank = r.read<uint8_t>();
    if (rank > 8) r.corrupt(name + " has rank " + std::to_string(rank));
    int64_t n = 1;
    for (int d = 0; d < rank; d++) {
      const int64_t dim = r.read<uint32_t>();
      if (__builtin_mul_overflow(n, dim, &n) || n > (int64_t{1} << 40)) r.corrupt(name + " has an impossible shape");
      t.shape.push_back(dim);
    }
    const auto type = r.read<uint8_t>();
    const auto nbytes = r.read<uint32_t>();
    const size_t size = typeSize(type);
    if (size == 0)
      throw std::runtime_error(path + ": unsupported tensor type " + std::to_string(type) + " for " + name +
                               " (quantized models are not supported; use the float16 model)");
    // n <= 2^40 and size <= 4: the product fits.
    if (static_cast<uint64_t>(nbytes) != static_cast<uint64_t>(n) * size)
      r.corrupt(name + " holds " + std::to_string(nbytes) + " bytes, its shape and type need " +
                std::to_string(static_cast<uint64_t>(n) * size));
    const char* p = r.bytes(nbytes, name);
    switch (type) {
      case 0:  // float32
        t.data.resize(static_cast<size_t>(n));
        if (n) std::memcpy(t.data.data(), p, nbytes);
        t.isFloat = true;
        break;
      case 4:  // float16
        t.data.resize(static_cast<size_t>(n));
        for (int64_t j = 0; j < n; j++) {
          uint16_t h;
          std::memcpy(&h, p + 2 * j, 2);
          t.data[static_cast<size_t>(j)] = halfToFloat(h);
        }
        t.isFloat = true;
        break;
      default:  // integers: only scalars are read (flags, head counts)
        if (n == 1) {
          if (type == 1) {
            t.scalar = static_cast<int8_t>(p[0]);
          } else if (type == 2) {
            int16_t v;
            std::memcpy(&v, p, 2);
            t.scalar = v;
          } else {
            int32_t v;
            std::memcpy(&v, p, 4);
            t.scalar = v;
          }
          t.isScalar = true;
        }
        break;
    }
    if (!tensors_.emplace(name, std::move(t)).second) r.corrupt("variable " + name + " appears twice");
  }
  const auto naliases = r.read<uint32_t>();
  // Each alias takes at least 4 bytes (two name lengths).
  r.fits(naliases, 4, "aliases");
  for (uint32_t i = 0; i < naliases; i++) {
    std::string alias = r.str("an alias");
    std::string target = r.str("an alias target");
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
  if (!shape.empty() && !it->second.isFloat)
    throw std::runtime_error(path_ + ": tensor " + name + " is not a float tensor (not a Whisper model?)");
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

int64_t Ct2Model::scalar(const std::string& name) const {
  const Tensor& t = get(name);
  if (!t.isScalar) throw std::runtime_error(path_ + ": " + name + " is not an integer scalar (not a Whisper model?)");
  return t.scalar;
}

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
