#include "onnx_subgraphs.h"

#include <cstdint>
#include <stdexcept>

namespace captiongate::moonshine {
namespace {

// Field numbers (onnx.proto): ModelProto.graph = 7; GraphProto.node = 1,
// GraphProto.name = 2; NodeProto.attribute = 5; AttributeProto.g = 6,
// AttributeProto.graphs = 11.
enum class Msg { kModel, kGraph, kNode, kAttribute };

struct Reader {
  const char* p;
  const char* end;
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p >= end) throw std::runtime_error("ONNX model: truncated varint");
      const uint8_t b = static_cast<uint8_t>(*p++);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    throw std::runtime_error("ONNX model: varint too long");
  }
  void skip(size_t n) {
    if (n > static_cast<size_t>(end - p)) throw std::runtime_error("ONNX model: field runs past the end");
    p += n;
  }
};

void putVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

void putLen(std::string& out, uint32_t field, const std::string& bytes) {
  putVarint(out, (static_cast<uint64_t>(field) << 3) | 2);
  putVarint(out, bytes.size());
  out += bytes;
}

std::string rewrite(const char* p, const char* end, Msg kind, int depth, int* counter) {
  if (depth > 64) throw std::runtime_error("ONNX model: graphs nested too deep");
  Reader r{p, end};
  std::string out;
  out.reserve(static_cast<size_t>(end - p) + 32);
  bool named = false;
  while (r.p < r.end) {
    const char* fieldStart = r.p;
    const uint64_t tag = r.varint();
    const uint32_t field = static_cast<uint32_t>(tag >> 3);
    const int wire = static_cast<int>(tag & 7);
    Msg child = Msg::kModel;
    bool recurse = false;
    if (wire == 2) {
      if (kind == Msg::kModel && field == 7) child = Msg::kGraph, recurse = true;
      else if (kind == Msg::kGraph && field == 1) child = Msg::kNode, recurse = true;
      else if (kind == Msg::kNode && field == 5) child = Msg::kAttribute, recurse = true;
      else if (kind == Msg::kAttribute && (field == 6 || field == 11)) child = Msg::kGraph, recurse = true;
      if (kind == Msg::kGraph && field == 2) {
        const uint64_t n = r.varint();
        r.skip(n);
        if (n == 0) continue;  // an empty name is as good as none: one is added below
        named = true;
        out.append(fieldStart, static_cast<size_t>(r.p - fieldStart));
        continue;
      }
    }
    switch (wire) {
      case 0:
        r.varint();
        break;
      case 1:
        r.skip(8);
        break;
      case 5:
        r.skip(4);
        break;
      case 2: {
        const uint64_t n = r.varint();
        const char* body = r.p;
        r.skip(n);
        if (recurse) {
          putLen(out, field, rewrite(body, body + n, child, depth + 1, counter));
          continue;
        }
        break;
      }
      default:
        throw std::runtime_error("ONNX model: unsupported wire type " + std::to_string(wire));
    }
    out.append(fieldStart, static_cast<size_t>(r.p - fieldStart));
  }
  if (kind == Msg::kGraph && !named) putLen(out, 2, "captiongate_subgraph_" + std::to_string((*counter)++));
  return out;
}

}  // namespace

std::string nameOnnxSubgraphs(const std::string& model) {
  int counter = 0;
  return rewrite(model.data(), model.data() + model.size(), Msg::kModel, 0, &counter);
}

}  // namespace captiongate::moonshine
