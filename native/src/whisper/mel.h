// Whisper's log-mel front end, exactly: 16 kHz, n_fft 400 (periodic Hann),
// hop 160, centered frames with reflect padding, power spectrum, 80 Slaney
// mel filters (librosa's), log10 clamped at 1e-10 and at max − 8, then
// (x + 4) / 4. The last STFT frame is dropped, as Whisper does, so N samples
// give N / 160 frames.
#pragma once

#include <vector>

namespace captiongate::whisper {

constexpr int kSampleRate = 16000;
constexpr int kNFft = 400;
constexpr int kHop = 160;
constexpr int kMels = 80;
constexpr int kWindowSamples = 30 * kSampleRate;  // 480,000
constexpr int kWindowFrames = kWindowSamples / kHop;  // 3,000

class LogMel {
 public:
  LogMel();
  // Returns mel[80][frames] (mel-major, as the encoder's conv1 reads it) for
  // audio padded with zeros (or trimmed) to `frames` × 160 samples.
  std::vector<float> compute(const float* audio, int n, int frames) const;
  const std::vector<float>& filters() const { return filters_; }  // [80][201]

 private:
  std::vector<float> window_;   // [400]
  std::vector<float> cosT_;     // [201][400]
  std::vector<float> sinT_;     // [201][400]
  std::vector<float> filters_;  // [80][201]
};

}  // namespace captiongate::whisper
