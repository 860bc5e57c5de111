// The ONNX Runtime C/C++ API as the Moonshine engine uses it. Every file of
// the engine includes the API through this header, so ORT_API_MANUAL_INIT is
// defined in all of them: the addon does not link libonnxruntime. The
// library is dlopen()ed once per process (loadOrt) and the C++ wrapper's API
// pointer is set from it (Ort::InitApi). Binding at run time, by the
// unversioned OrtGetApiBase, keeps the addon free of the library's symbol
// version, and a missing library is a clear error at engine load instead of
// a failure to load the whole addon.
//
// Headers: Debian's libonnxruntime-dev 1.21 (ORT_API_VERSION 21), fetched
// and verified by scripts/fetch-moonshine-model.mjs into build/onnxruntime.
// Library: npm onnxruntime-node 1.22.0's bundled libonnxruntime.so.1, which
// serves API versions up to 22, so version 21 of the C API is stable there.
#pragma once

#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <string>

namespace captiongate::moonshine {

// Loads the library at `path` (once per process; later calls with another
// path are refused, since one process can hold one ONNX Runtime) and
// initializes the C++ API. Returns the library's version string. Throws
// std::runtime_error with what to do when the library is missing or too old.
std::string loadOrt(const std::string& path);

}  // namespace captiongate::moonshine
