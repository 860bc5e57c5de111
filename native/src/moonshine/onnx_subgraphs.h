// Names the unnamed subgraphs of an ONNX model (protobuf bytes in, bytes
// out). ONNX Runtime can write an ORT-format model back out as ONNX
// (SessionOptions::SetOptimizedModelFilePath), but the ORT format keeps no
// names for control-flow subgraphs (the merged decoder's If branches), and
// the ONNX checker refuses a graph without a name. Only the name fields are
// added; every other byte is copied as it is.
//
// Why the engine round-trips a model through ONNX at all: ONNX Runtime does
// not run graph optimizations on ORT-format models, so Moonshine base's
// weight-only int8 dequantization (Cast, Mul, Transpose of constant
// initializers) ran on every decoder step: 70 ms a step. Loaded as ONNX, the
// constant folding happens once at load (14 ms a step, same tokens; see
// docs/moonshine.md).
#pragma once

#include <string>

namespace captiongate::moonshine {

// Throws std::runtime_error on malformed input.
std::string nameOnnxSubgraphs(const std::string& model);

}  // namespace captiongate::moonshine
