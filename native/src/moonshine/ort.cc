#include "ort.h"

#include <dlfcn.h>

#include <mutex>
#include <stdexcept>

namespace captiongate::moonshine {
namespace {

std::mutex mu;
std::string loadedPath;   // under mu
std::string loadedVersion;

}  // namespace

std::string loadOrt(const std::string& path) {
  std::lock_guard<std::mutex> lk(mu);
  if (!loadedPath.empty()) {
    if (path != loadedPath)
      throw std::runtime_error("ONNX Runtime is already loaded from " + loadedPath + "; one process holds one (asked for " + path + ")");
    return loadedVersion;
  }
  // RTLD_LOCAL: its symbols stay out of the global namespace (onnxruntime-node's
  // own binding, if a process also loads it, binds the same file by its path).
  // The handle is never closed: ORT keeps threads and globals for the process.
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    throw std::runtime_error("cannot load the ONNX Runtime library (" + std::string(e ? e : path) +
                             "). It comes with the npm package onnxruntime-node 1.22.0: run npm ci (scripts/setup.sh does)");
  }
  using GetApiBase = const OrtApiBase* (*)();
  auto fn = reinterpret_cast<GetApiBase>(dlsym(h, "OrtGetApiBase"));
  if (!fn) throw std::runtime_error(path + " is not an ONNX Runtime library (no OrtGetApiBase)");
  const OrtApiBase* base = fn();
  const OrtApi* api = base ? base->GetApi(ORT_API_VERSION) : nullptr;
  const std::string version = base && base->GetVersionString ? base->GetVersionString() : "unknown";
  if (!api)
    throw std::runtime_error("the ONNX Runtime library at " + path + " (version " + version + ") does not serve C API version " +
                             std::to_string(ORT_API_VERSION) + "; install onnxruntime-node 1.22.0 (npm ci)");
  Ort::InitApi(api);
  loadedPath = path;
  loadedVersion = version;
  return version;
}

}  // namespace captiongate::moonshine
