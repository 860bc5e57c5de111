// What the N-API layer needs from a streaming backend. PocketSphinx (Engine)
// and Whisper (whisper::WhisperStreamEngine) implement it; both take the same
// batches of windows and give the same results, so the gateway cannot tell
// them apart.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine_types.h"

namespace captiongate {

class StreamEngine {
 public:
  virtual ~StreamEngine() = default;
  virtual bool load(std::string* error) = 0;
  virtual uint32_t openStream(std::string* error) = 0;
  virtual bool closeStream(uint32_t id) = 0;
  virtual bool submit(std::unique_ptr<Batch> batch, std::string* error) = 0;
  virtual std::vector<std::unique_ptr<Batch>> takeCompleted() = 0;
  virtual std::vector<uint32_t> takeReady() = 0;
  virtual void shutdown() = 0;
  virtual bool isShutdown() const = 0;
  virtual EngineStats stats() = 0;
  virtual void injectFault(uint32_t id) = 0;
};

}  // namespace captiongate
