// Per-stream speech detector: PocketSphinx's own front-end VAD (sphinxbase
// fe_t with remove_silence) run on its own, without a decoder. It is tens of
// kilobytes per stream, so every stream has one and only streams that are
// inside an utterance need one of the few, large decoders.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

struct fe_s;

namespace captiongate {

struct VadSettings {
  double threshold = 2.0;   // log-ratio of signal to noise level
  int startSpeechFrames = 10;  // speech frames to enter speech (10 ms each)
  int postSpeechFrames = 50;   // silence frames to leave speech (the endpoint)
  int preSpeechFrames = 20;    // kept before the trigger (fe's own buffer)
};

class Vad {
 public:
  static constexpr int kFrameShift = 160;  // 10 ms at 16 kHz

  Vad() = default;
  ~Vad();
  // Owns a C front end: not copyable; moving hands the front end over.
  Vad(const Vad&) = delete;
  Vad& operator=(const Vad&) = delete;
  Vad(Vad&& other) noexcept;
  Vad& operator=(Vad&& other) noexcept;

  // Returns false and fills *error if the front end cannot be created.
  bool init(const VadSettings& s, std::string* error);

  // Feeds samples; returns the smoothed speech state after the last complete
  // frame. Call with at most one frame shift at a time to see every change.
  bool process(const int16_t* pcm, size_t n);
  bool inSpeech() const { return inSpeech_; }

 private:
  fe_s* fe_ = nullptr;
  std::vector<float> cep_;      // scratch output frames (discarded)
  std::vector<float*> cepRows_;
  bool inSpeech_ = false;
};

}  // namespace captiongate
