#include "vad.h"

#include <pocketsphinx.h>
#include <sphinxbase/fe.h>

#include <algorithm>
#include <string>

namespace captiongate {

namespace {
constexpr int kMaxFrames = 128;  // > pre-speech buffer + one call's frames
constexpr int kCepLen = 13;
}  // namespace

Vad::Vad(Vad&& other) noexcept { *this = std::move(other); }

Vad& Vad::operator=(Vad&& other) noexcept {
  if (this != &other) {
    if (fe_) fe_free(fe_);
    fe_ = other.fe_;
    cep_ = std::move(other.cep_);
    cepRows_ = std::move(other.cepRows_);
    startFrames_ = other.startFrames_;
    endFrames_ = other.endFrames_;
    frameSize_ = other.frameSize_;
    frameShift_ = other.frameShift_;
    fed_ = other.fed_;
    frames_ = other.frames_;
    preFrames_ = other.preFrames_;
    postFrames_ = other.postFrames_;
    frameSpeech_ = other.frameSpeech_;
    inSpeech_ = other.inSpeech_;
    other.fe_ = nullptr;
    other.fed_ = other.frames_ = 0;
    other.preFrames_ = other.postFrames_ = 0;
    other.frameSpeech_ = other.inSpeech_ = false;
  }
  return *this;
}

bool Vad::init(const VadSettings& s, std::string* error) {
  if (fe_) {
    *error = "VAD already initialized";
    return false;
  }
  if (s.startSpeechFrames < 1 || s.postSpeechFrames < 1) {
    *error = "invalid VAD settings";
    return false;
  }
  std::string thr = std::to_string(s.threshold);
  std::string pre = std::to_string(s.preSpeechFrames);
  // Front-end parameters follow the en-us model's feat.params so the noise
  // tracker sees the same mel spectrum as the decoder. A hangover of one
  // frame each way makes fe's state the raw per-frame decision; hangover()
  // smooths it with the configured frame counts.
  cmd_ln_t* cfg = cmd_ln_init(nullptr, fe_get_args(), FALSE,
                              "-samprate", "16000",
                              "-lowerf", "130", "-upperf", "6800", "-nfilt", "25",
                              "-transform", "dct", "-lifter", "22",
                              "-remove_silence", "yes", "-remove_noise", "yes",
                              "-vad_threshold", thr.c_str(),
                              "-vad_startspeech", "1",
                              "-vad_postspeech", "1",
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
  fe_get_input_size(fe_, &frameShift_, &frameSize_);
  startFrames_ = s.startSpeechFrames;
  endFrames_ = s.postSpeechFrames;
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

// fe_vad_hangover's smoothing (sphinxbase 5prealpha, fe_noise.c), on the raw
// decision of one frame.
void Vad::hangover(bool speech) {
  frameSpeech_ = speech;
  if (speech) {
    postFrames_ = 0;
    if (!inSpeech_ && ++preFrames_ >= startFrames_) {
      preFrames_ = 0;
      inSpeech_ = true;
    }
  } else {
    preFrames_ = 0;
    if (inSpeech_ && ++postFrames_ >= endFrames_) {
      postFrames_ = 0;
      inSpeech_ = false;
    }
  }
}

void Vad::feed(const int16_t* pcm, size_t n) {
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
}

bool Vad::process(const int16_t* pcm, size_t n, bool quiet) {
  if (!fe_) return false;
  // Fed so that each call to fe completes at most one frame: the front end's
  // state after it is that frame's raw decision.
  while (n > 0) {
    const int64_t nextFrameEnd = frameSize_ + frames_ * frameShift_;
    const size_t take = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(n), nextFrameEnd - fed_));
    feed(pcm, take);
    pcm += take;
    n -= take;
    fed_ += static_cast<int64_t>(take);
    if (fed_ == nextFrameEnd) {
      ++frames_;
      hangover(fe_get_vad_state(fe_) != 0 && !quiet);
    }
  }
  return inSpeech_;
}

}  // namespace captiongate
