// Input conversion for one session: s16le/f32le, 8-48 kHz, mono/stereo in;
// 16 kHz mono out, as float or as 16-bit samples (what the session's ring
// holds, and what every recognizer decodes from). Resampling is the Speex resampler (speexdsp), a
// streaming windowed-sinc resampler with state carried between frames.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

struct SpeexResamplerState_;

namespace captiongate {

enum class Encoding { kS16le, kF32le };

class AudioConverter {
 public:
  static constexpr int kOutRate = 16000;

  AudioConverter() = default;
  ~AudioConverter();
  // Owns a Speex resampler: not copyable; moving hands it over.
  AudioConverter(const AudioConverter&) = delete;
  AudioConverter& operator=(const AudioConverter&) = delete;
  AudioConverter(AudioConverter&& other) noexcept;
  AudioConverter& operator=(AudioConverter&& other) noexcept;

  bool init(int inRate, int channels, Encoding enc, int quality, std::string* error);

  int bytesPerFrame() const { return channels_ * (enc_ == Encoding::kS16le ? 2 : 4); }
  // Upper bound on output samples for inFrames more input frames.
  size_t maxOutput(size_t inFrames) const;
  // Converts whole frames from bytes; returns samples written to out.
  size_t convert(const uint8_t* bytes, size_t nbytes, float* out, size_t outCap);
  // Emits the resampler's tail so total output matches total input duration.
  size_t flush(float* out, size_t outCap);
  // The same, as 16-bit samples: round(x × 32768) to nearest even, clamped.
  size_t convert(const uint8_t* bytes, size_t nbytes, int16_t* out, size_t outCap);
  size_t flush(int16_t* out, size_t outCap);
  int inputLatency() const;

 private:
  int inRate_ = 16000;
  int channels_ = 1;
  Encoding enc_ = Encoding::kS16le;
  SpeexResamplerState_* st_ = nullptr;
  std::vector<float> mono_;
  std::vector<float> staged_;  // float output before quantizing to 16 bits
  uint64_t totalIn_ = 0;   // input frames
  uint64_t totalOut_ = 0;  // output samples
};

}  // namespace captiongate
