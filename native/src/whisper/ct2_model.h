// Reader for CTranslate2's model.bin (binary version 6), the format the
// faster-whisper weights ship in. Every float tensor is widened to float32 at
// load: the CPU device computes in float32, as CTranslate2 does on CPU.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace captiongate::whisper {

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;  // float tensors, widened
  int64_t scalar = 0;       // integer scalars (flags, head counts)
  bool isFloat = false;
  bool isScalar = false;    // an integer tensor of one element
  int64_t numel() const;
};

class Ct2Model {
 public:
  // Throws std::runtime_error with a message that names the file and problem.
  explicit Ct2Model(const std::string& path);

  const std::string& spec() const { return spec_; }
  int revision() const { return revision_; }
  // Throws if missing, or if a shape is given and the tensor is not a float
  // tensor of exactly that shape (shape {} skips both checks).
  const Tensor& get(const std::string& name, const std::vector<int64_t>& shape = {}) const;
  bool has(const std::string& name) const;
  int64_t scalar(const std::string& name) const;
  // Frees a float tensor's host copy once a device owns it (its shape stays;
  // its old data pointer remains only a handle).
  void release(const std::string& name);
  std::vector<std::string> names() const;

 private:
  std::string path_;
  std::string spec_;
  int revision_ = 0;
  std::map<std::string, Tensor> tensors_;
  std::map<std::string, std::string> aliases_;
};

float halfToFloat(uint16_t h);

}  // namespace captiongate::whisper
