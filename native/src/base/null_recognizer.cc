#include "null_recognizer.h"

namespace captiongate {

void NullRecognizer::load(RecognizerHost&) {}

std::unique_ptr<RecognizerStream> NullRecognizer::createStream(uint32_t, const StreamOptions&) { return std::make_unique<RecognizerStream>(); }

void NullRecognizer::decode(const std::vector<DecodeJob>& jobs) {
  for (const DecodeJob& j : jobs) {
    j.out.consumed = static_cast<uint32_t>(j.in.pcm.size());
    j.out.flushed = j.in.flush;
  }
}

void NullRecognizer::closeStream(RecognizerStream&, uint32_t) noexcept {}

}  // namespace captiongate
