#include "audio_converter.h"

#include <cmath>

#include <speex/speex_resampler.h>

#include <algorithm>
#include <cstring>

namespace captiongate {

AudioConverter::AudioConverter(AudioConverter&& other) noexcept
    : inRate_(other.inRate_), channels_(other.channels_), enc_(other.enc_), st_(other.st_),
      mono_(std::move(other.mono_)), staged_(std::move(other.staged_)), totalIn_(other.totalIn_), totalOut_(other.totalOut_) {
  other.st_ = nullptr;
}

AudioConverter& AudioConverter::operator=(AudioConverter&& other) noexcept {
  if (this != &other) {
    if (st_) speex_resampler_destroy(st_);
    inRate_ = other.inRate_;
    channels_ = other.channels_;
    enc_ = other.enc_;
    st_ = other.st_;
    mono_ = std::move(other.mono_);
    staged_ = std::move(other.staged_);
    totalIn_ = other.totalIn_;
    totalOut_ = other.totalOut_;
    other.st_ = nullptr;
  }
  return *this;
}

bool AudioConverter::init(int inRate, int channels, Encoding enc, int quality, std::string* error) {
  if (st_) {
    *error = "converter already initialized";
    return false;
  }
  if (quality < 0 || quality > 10) {
    *error = "quality must be 0-10";
    return false;
  }
  if (inRate < 8000 || inRate > 48000) {
    *error = "sample rate must be 8000-48000";
    return false;
  }
  if (channels < 1 || channels > 2) {
    *error = "channels must be 1 or 2";
    return false;
  }
  inRate_ = inRate;
  channels_ = channels;
  enc_ = enc;
  if (inRate != kOutRate) {
    int err = 0;
    st_ = speex_resampler_init(1, static_cast<spx_uint32_t>(inRate), kOutRate, quality, &err);
    if (!st_ || err != RESAMPLER_ERR_SUCCESS) {
      *error = std::string("speex resampler init failed: ") + speex_resampler_strerror(err);
      return false;
    }
    // Drop the filter's leading delay so output sample 0 is input time 0.
    speex_resampler_skip_zeros(st_);
  }
  return true;
}

AudioConverter::~AudioConverter() {
  if (st_) speex_resampler_destroy(st_);
}

int AudioConverter::inputLatency() const { return st_ ? speex_resampler_get_input_latency(st_) : 0; }

size_t AudioConverter::maxOutput(size_t inFrames) const {
  if (!st_) return inFrames;
  return (inFrames + static_cast<size_t>(inputLatency())) * kOutRate / static_cast<size_t>(inRate_) + 2;
}

size_t AudioConverter::convert(const uint8_t* bytes, size_t nbytes, float* out, size_t outCap) {
  const size_t frames = nbytes / static_cast<size_t>(bytesPerFrame());
  float* dst = st_ ? nullptr : out;
  if (st_) {
    mono_.resize(frames);
    dst = mono_.data();
  } else if (frames > outCap) {
    return 0;
  }
  // Little-endian host assumed (x86_64, arm64); memcpy keeps it alignment-safe.
  if (enc_ == Encoding::kS16le) {
    for (size_t i = 0; i < frames; ++i) {
      int16_t l;
      std::memcpy(&l, bytes + i * channels_ * 2, 2);
      if (channels_ == 2) {
        int16_t r;
        std::memcpy(&r, bytes + i * 4 + 2, 2);
        dst[i] = (static_cast<float>(l) + static_cast<float>(r)) * (0.5f / 32768.f);
      } else {
        dst[i] = static_cast<float>(l) * (1.f / 32768.f);
      }
    }
  } else {
    for (size_t i = 0; i < frames; ++i) {
      float l;
      std::memcpy(&l, bytes + i * channels_ * 4, 4);
      if (channels_ == 2) {
        float r;
        std::memcpy(&r, bytes + i * 8 + 4, 4);
        dst[i] = (l + r) * 0.5f;
      } else {
        dst[i] = l;
      }
    }
  }
  totalIn_ += frames;
  if (!st_) {
    totalOut_ += frames;
    return frames;
  }
  spx_uint32_t inLen = static_cast<spx_uint32_t>(frames);
  spx_uint32_t outLen = static_cast<spx_uint32_t>(outCap);
  speex_resampler_process_float(st_, 0, mono_.data(), &inLen, out, &outLen);
  totalOut_ += outLen;
  return outLen;
}

size_t AudioConverter::flush(float* out, size_t outCap) {
  if (!st_) return 0;
  const uint64_t expected = totalIn_ * kOutRate / static_cast<uint64_t>(inRate_);
  if (totalOut_ >= expected) return 0;
  std::vector<float> zeros(static_cast<size_t>(inputLatency()) + 1, 0.f);
  spx_uint32_t inLen = static_cast<spx_uint32_t>(zeros.size());
  spx_uint32_t outLen = static_cast<spx_uint32_t>(std::min<uint64_t>(outCap, expected - totalOut_));
  speex_resampler_process_float(st_, 0, zeros.data(), &inLen, out, &outLen);
  totalOut_ += outLen;
  return outLen;
}

namespace {
// The quantization every recognizer applied to float input: lrintf (round to
// nearest, ties to even) of x × 32768, clamped to int16.
void quantize(const float* in, size_t n, int16_t* out) {
  for (size_t i = 0; i < n; ++i) {
    float x = in[i] * 32768.f;
    x = x > 32767.f ? 32767.f : (x < -32768.f ? -32768.f : x);
    out[i] = static_cast<int16_t>(std::lrintf(x));
  }
}
}  // namespace

size_t AudioConverter::convert(const uint8_t* bytes, size_t nbytes, int16_t* out, size_t outCap) {
  staged_.resize(outCap);
  const size_t n = convert(bytes, nbytes, staged_.data(), outCap);
  quantize(staged_.data(), n, out);
  return n;
}

size_t AudioConverter::flush(int16_t* out, size_t outCap) {
  staged_.resize(outCap);
  const size_t n = flush(staged_.data(), outCap);
  quantize(staged_.data(), n, out);
  return n;
}

}  // namespace captiongate
