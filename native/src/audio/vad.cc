#include "vad.h"

#include <pocketsphinx.h>
#include <sphinxbase/fe.h>

#include <string>

namespace captiongate {

namespace {
constexpr int kMaxFrames = 128;  // > pre-speech buffer + one call's frames
constexpr int kCepLen = 13;
}  // namespace

Vad::Vad(Vad&& other) noexcept
    : fe_(other.fe_), cep_(std::move(other.cep_)), cepRows_(std::move(other.cepRows_)), inSpeech_(other.inSpeech_) {
  other.fe_ = nullptr;
  other.inSpeech_ = false;
}

Vad& Vad::operator=(Vad&& other) noexcept {
  if (this != &other) {
    if (fe_) fe_free(fe_);
    fe_ = other.fe_;
    cep_ = std::move(other.cep_);
    cepRows_ = std::move(other.cepRows_);
    inSpeech_ = other.inSpeech_;
    other.fe_ = nullptr;
    other.inSpeech_ = false;
  }
  return *this;
}

bool Vad::init(const VadSettings& s, std::string* error) {
  if (fe_) {
    *error = "VAD already initialized";
    return false;
  }
  std::string thr = std::to_string(s.threshold);
  std::string start = std::to_string(s.startSpeechFrames);
  std::string post = std::to_string(s.postSpeechFrames);
  std::string pre = std::to_string(s.preSpeechFrames);
  // Front-end parameters follow the en-us model's feat.params so the noise
  // tracker sees the same mel spectrum as the decoder.
  cmd_ln_t* cfg = cmd_ln_init(nullptr, fe_get_args(), FALSE,
                              "-samprate", "16000",
                              "-lowerf", "130", "-upperf", "6800", "-nfilt", "25",
                              "-transform", "dct", "-lifter", "22",
                              "-remove_silence", "yes", "-remove_noise", "yes",
                              "-vad_threshold", thr.c_str(),
                              "-vad_startspeech", start.c_str(),
                              "-vad_postspeech", post.c_str(),
                              "-vad_prespeech", pre.c_str(),
                              nullptr);
  if (!cfg) {
    *error = "invalid VAD settings";
    return false;
  }
  // fe.h says fe_init_auto_r claims the config, but Debian's sphinxbase
  // (5prealpha) takes its own reference (cmd_ln_retain) and fe_free()
  // releases only that one: ours must be released here, or every stream
  // leaks about 3 KB (found by LeakSanitizer in native/test).
  fe_ = fe_init_auto_r(cfg);
  cmd_ln_free_r(cfg);
  if (!fe_) {
    *error = "failed to create the VAD front end";
    return false;
  }
  fe_start_stream(fe_);
  fe_start_utt(fe_);
  cep_.assign(static_cast<size_t>(kMaxFrames) * kCepLen, 0.f);
  cepRows_.resize(kMaxFrames);
  for (int i = 0; i < kMaxFrames; ++i) cepRows_[i] = cep_.data() + static_cast<size_t>(i) * kCepLen;
  return true;
}

Vad::~Vad() {
  if (fe_) fe_free(fe_);
}

bool Vad::process(const int16_t* pcm, size_t n) {
  if (!fe_) return false;
  const int16* p = pcm;
  size_t left = n;
  while (left > 0) {
    int32 nframes = kMaxFrames;
    fe_process_frames(fe_, &p, &left, cepRows_.data(), &nframes, nullptr);
    if (nframes == 0 && left > 0) {
      // Not enough samples for a frame: fe buffered them.
      break;
    }
  }
  inSpeech_ = fe_get_vad_state(fe_) != 0;
  return inSpeech_;
}

}  // namespace captiongate
