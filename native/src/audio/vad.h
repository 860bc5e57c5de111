// Per-stream speech detector: PocketSphinx's own front-end VAD (sphinxbase
// fe_t with remove_silence) run on its own, without a decoder. It is tens of
// kilobytes per stream, so every stream has one and only streams that are
// inside an utterance need one of the few, large decoders.
//
// The front end runs with a hangover of one frame each way, so its state is
// the raw per-frame decision (frameSpeech()), and the smoothing that sphinxbase
// would do (fe_vad_hangover: startSpeechFrames speech frames in a row enter
// speech, postSpeechFrames non-speech frames in a row leave it) is done here,
// frame by frame, with the same counters. sphinxbase's noise tracker does not
// depend on that smoothing, so inSpeech() is exactly what a front end with
// the real hangover reports (native/test checks it frame by frame) as long
// as no frame is fed as `quiet` (process()); the raw decision comes at no
// extra cost.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../base/types.h"

struct fe_s;

namespace captiongate {

// A postSpeechFrames no pause reaches (about 248 days of 10 ms frames).
constexpr int kNeverEndFrames = 2'147'483'647;

struct VadSettings {
  double threshold = 2.0;   // log-ratio of signal to noise level
  int startSpeechFrames = 10;  // speech frames to enter speech (10 ms each)
  int postSpeechFrames = 50;   // silence frames to leave speech (the endpoint)
  int preSpeechFrames = 20;    // kept before the trigger (fe's own buffer)
};

// The stream's VAD settings: the engine's, with the stream's own endpoint
// silence when it asks for one (StreamOptions::endpointFrames). No endpoint
// is a hangover no pause reaches.
inline VadSettings withEndpoint(VadSettings s, int endpointFrames) {
  if (endpointFrames > 0) s.postSpeechFrames = endpointFrames;
  else if (endpointFrames < 0) s.postSpeechFrames = kNeverEndFrames;
  return s;
}

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
  // `quiet`: the caller knows these samples are not speech (near the noise
  // floor): the frame completed in this call counts as non-speech, whatever
  // the front end decides. That frame is the front end's 25.6 ms window
  // ending in this call, so it is mostly the audio before these samples.
  bool process(const int16_t* pcm, size_t n, bool quiet = false);
  bool inSpeech() const { return inSpeech_; }
  // The unsmoothed decision for the last complete frame (false before the
  // first one, and for a `quiet` one): a short pause between words shows
  // here, not in inSpeech().
  bool frameSpeech() const { return frameSpeech_; }

 private:
  void feed(const int16_t* pcm, size_t n);
  void hangover(bool speech);

  fe_s* fe_ = nullptr;
  std::vector<float> cep_;      // scratch output frames (discarded)
  std::vector<float*> cepRows_;
  int startFrames_ = 0;   // VadSettings::startSpeechFrames
  int endFrames_ = 0;     // VadSettings::postSpeechFrames
  int frameSize_ = 0;     // samples per analysis frame (fe's window)
  int frameShift_ = 0;
  int64_t fed_ = 0;       // samples given to fe_
  int64_t frames_ = 0;    // frames fe_ has analyzed
  int preFrames_ = 0;     // speech frames in a row while not in speech
  int postFrames_ = 0;    // non-speech frames in a row while in speech
  bool frameSpeech_ = false;
  bool inSpeech_ = false;
};

}  // namespace captiongate
