// The null recognizer: consumes every window whole, decodes nothing. It
// measures the native boundary (engine kind "null": N-API, the base's queue
// and workers, result delivery) with recognition taken out, and is the
// recognizer the C++ tests drive the base with.
#pragma once

#include "recognizer.h"

namespace captiongate {

struct NullSettings {
  int workers = 1;
  size_t maxStreamsPerDecode = 0;  // 0: every ready stream in one call
};

class NullRecognizer : public Recognizer {
 public:
  explicit NullRecognizer(NullSettings settings = {}) : settings_(settings) {}

  void load(RecognizerHost& host) override;
  int workers() const override { return settings_.workers; }
  size_t maxStreamsPerDecode() const override { return settings_.maxStreamsPerDecode; }
  std::unique_ptr<RecognizerStream> createStream(uint32_t stream, const StreamOptions& options) override;
  void decode(const std::vector<DecodeJob>& jobs) override;
  void closeStream(RecognizerStream& state, uint32_t stream) noexcept override;
  RecognizerStats stats() const override { return {}; }

 private:
  const NullSettings settings_;
};

}  // namespace captiongate
