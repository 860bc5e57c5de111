#include "ps_recognizer.h"

#include <algorithm>
#include <stdexcept>

namespace captiongate {

struct PsRecognizer::Stream : RecognizerStream {
  explicit Stream(uint32_t streamId) : id(streamId) {}
  const uint32_t id;

  // Guarded by poolMu_.
  bool waiting = false;  // in waiters_
  PsDecoder* reserved = nullptr;
  Clock::time_point waitSince;

  // The stream's own: touched only inside decode()/closeStream() for it.
  Vad vad;
  std::vector<int16_t> ring;  // the last ring.size() samples, for pre-roll
  PsDecoder* dec = nullptr;
  CmnState cmn;
  int64_t pos = 0;     // samples consumed so far
  bool inUtt = false;  // VAD says speech; the decoder may still be pending
  int64_t uttStart = 0;
  int64_t lastUttEnd = 0;
  int64_t handoverFrom = -1;  // where the search for a pause to cut at began
  double pendingWaitMs = 0;

  void pushRing(const int16_t* p, size_t n) {
    const int64_t cap = static_cast<int64_t>(ring.size());
    for (size_t i = 0; i < n; ++i) ring[static_cast<size_t>((pos + static_cast<int64_t>(i)) % cap)] = p[i];
  }
  // Copies ring samples [from, pos) into out (from >= pos - ring.size()).
  void readRing(int64_t from, std::vector<int16_t>* out) const {
    const int64_t cap = static_cast<int64_t>(ring.size());
    out->clear();
    for (int64_t p = from; p < pos; ++p) out->push_back(ring[static_cast<size_t>(p % cap)]);
  }
};

PsRecognizer::PsRecognizer(PsSettings settings) : settings_(std::move(settings)) {}

PsRecognizer::~PsRecognizer() = default;

void PsRecognizer::load(RecognizerHost& host) {
  if (settings_.decoders < 1) throw std::invalid_argument("PocketSphinx needs at least one decoder");
  std::vector<std::unique_ptr<PsDecoder>> loaded;
  for (int i = 0; i < settings_.decoders; ++i) {
    std::string error;
    auto d = PsDecoder::Create(settings_.search, &error);
    if (!d) throw std::runtime_error(error);
    loaded.push_back(std::move(d));
  }
  host_ = &host;
  initialCmn_ = loaded.front()->initialCmn();
  decoders_ = std::move(loaded);
  std::lock_guard<std::mutex> lk(poolMu_);
  for (auto& d : decoders_) free_.push_back(d.get());
  decoderCount_ = static_cast<int>(decoders_.size());
}

std::unique_ptr<RecognizerStream> PsRecognizer::createStream(uint32_t stream, const StreamOptions& options) {
  auto s = std::make_unique<Stream>(stream);
  std::string error;
  if (!s->vad.init(withEndpoint(settings_.vad, options.endpointFrames), &error)) throw std::runtime_error(error);
  s->ring.assign(static_cast<size_t>(settings_.prerollSamples + 2 * Vad::kFrameShift), 0);
  s->cmn = initialCmn_;
  return s;
}

RecognizerStats PsRecognizer::stats() const {
  std::lock_guard<std::mutex> lk(poolMu_);
  RecognizerStats r;
  r.decoders = decoderCount_;
  r.decodersInUse = decoderCount_ - static_cast<int>(free_.size());
  r.streamsWaiting = static_cast<int>(waiters_.size());
  r.decoderWaits = decoderWaits_;
  r.decoderWaitMsTotal = decoderWaitMsTotal_;
  r.samplesDecoded = samplesDecoded_;
  r.modelBytes = 0;  // not measured
  return r;
}

uint64_t PsRecognizer::handovers() const {
  std::lock_guard<std::mutex> lk(poolMu_);
  return handovers_;
}

void PsRecognizer::countDecoded(uint64_t samples) {
  std::lock_guard<std::mutex> lk(poolMu_);
  samplesDecoded_ += samples;
}

bool PsRecognizer::acquireDecoder(Stream& s) {
  std::lock_guard<std::mutex> lk(poolMu_);
  if (s.reserved) {
    s.dec = s.reserved;
    s.reserved = nullptr;
    s.pendingWaitMs = std::chrono::duration<double, std::milli>(Clock::now() - s.waitSince).count();
    decoderWaitMsTotal_ += s.pendingWaitMs;
    return true;
  }
  // FIFO: a free decoder goes to a new talker only when nobody is parked.
  if (!s.waiting && waiters_.empty() && !free_.empty()) {
    s.dec = free_.back();
    free_.pop_back();
    return true;
  }
  if (!s.waiting) {
    s.waiting = true;
    s.waitSince = Clock::now();
    waiters_.push_back(&s);
    waiterCount_.store(static_cast<int>(waiters_.size()), std::memory_order_relaxed);
    ++decoderWaits_;
  }
  return false;
}

void PsRecognizer::giveBack(PsDecoder* d) {
  uint32_t readyId = 0;
  {
    std::lock_guard<std::mutex> lk(poolMu_);
    if (waiters_.empty()) {
      free_.push_back(d);
      return;
    }
    Stream* w = waiters_.front();
    waiters_.pop_front();
    waiterCount_.store(static_cast<int>(waiters_.size()), std::memory_order_relaxed);
    w->waiting = false;
    w->reserved = d;
    readyId = w->id;
  }
  host_->streamReady(readyId);
}

void PsRecognizer::releaseDecoder(Stream& s) {
  PsDecoder* d = s.dec;
  s.dec = nullptr;
  if (d) giveBack(d);
}

void PsRecognizer::release() noexcept {
  {
    std::lock_guard<std::mutex> lk(poolMu_);
    free_.clear();
    decoderCount_ = 0;
  }
  decoders_.clear();
}

void PsRecognizer::closeStream(RecognizerStream& state, uint32_t) noexcept {
  Stream& s = static_cast<Stream&>(state);
  if (s.dec) {
    s.dec->abortUtterance();
    releaseDecoder(s);
  }
  s.inUtt = false;
  PsDecoder* unused = nullptr;
  {
    std::lock_guard<std::mutex> lk(poolMu_);
    if (s.waiting) {
      waiters_.erase(std::remove(waiters_.begin(), waiters_.end(), &s), waiters_.end());
      waiterCount_.store(static_cast<int>(waiters_.size()), std::memory_order_relaxed);
      s.waiting = false;
    }
    unused = s.reserved;  // reserved for it, never taken: pass it on
    s.reserved = nullptr;
  }
  if (unused) giveBack(unused);
}

void PsRecognizer::decode(const std::vector<DecodeJob>& jobs) {
  for (const DecodeJob& j : jobs) {
    processWindow(static_cast<Stream&>(j.state), j.in, j.out);
  }
}

void PsRecognizer::endUtterance(Stream& s, WindowOut& out) {
  Utterance u;
  std::string err;
  if (!s.dec->endUtterance(settings_.wordConfidence, &u, &s.cmn, &err)) {
    out.error = ErrorCode::kDecodeFailed;
    out.errorMessage = err;
  }
  u.startSample = s.uttStart;
  u.endSample = s.pos;
  out.finals.push_back(std::move(u));
  s.inUtt = false;
  s.lastUttEnd = s.pos;
  s.handoverFrom = -1;
  releaseDecoder(s);
}

// Called after each 10 ms step of a stream that holds a decoder and is still
// in speech: whether to end the utterance here and hand the decoder on.
bool PsRecognizer::handOverNow(Stream& s) {
  if (settings_.holdSamples <= 0) return false;
  if (s.pos - s.uttStart < settings_.holdSamples || waiterCount_.load(std::memory_order_relaxed) == 0) {
    s.handoverFrom = -1;
    return false;
  }
  if (s.handoverFrom < 0) s.handoverFrom = s.pos;
  return !s.vad.frameSpeech() || s.pos - s.handoverFrom >= settings_.handoverSearchSamples;
}

// The base guarantees w.start == s.pos: the window continues the stream.
void PsRecognizer::processWindow(Stream& s, const WindowIn& w, WindowOut& out) {
  const int64_t n = static_cast<int64_t>(w.pcm.size());
  int64_t i = 0;
  std::string err;
  std::vector<int16_t> pre;

  auto startDecoding = [&]() -> bool {
    if (!s.dec->startUtterance(s.cmn, &err)) return false;
    s.readRing(s.uttStart, &pre);
    if (!s.dec->process(pre.data(), pre.size(), &err)) return false;
    countDecoded(pre.size());
    out.decoderWaitMs += s.pendingWaitMs;
    s.pendingWaitMs = 0;
    return true;
  };
  auto fail = [&]() {
    out.error = ErrorCode::kDecodeFailed;
    out.errorMessage = err.empty() ? "decoding failed" : err;
    if (s.dec) {
      s.dec->abortUtterance();
      releaseDecoder(s);
    }
    s.inUtt = false;
    s.lastUttEnd = s.pos;
    s.handoverFrom = -1;
  };

  // A parked utterance resumes only with a decoder.
  if (s.inUtt && !s.dec) {
    if (!acquireDecoder(s)) {
      out.waiting = true;
      out.consumed = 0;
      return;
    }
    if (!startDecoding()) {
      fail();
      return;
    }
  }

  int64_t feedFrom = -1;  // index in w.pcm where unfed decoder input starts
  uint64_t fed = 0;
  auto feed = [&](int64_t upto) -> bool {
    if (feedFrom >= 0 && upto > feedFrom && s.dec) {
      if (!s.dec->process(w.pcm.data() + feedFrom, static_cast<size_t>(upto - feedFrom), &err)) return false;
      fed += static_cast<uint64_t>(upto - feedFrom);
    }
    feedFrom = -1;
    return true;
  };

  bool parked = false;
  while (i < n) {
    const int64_t k = std::min<int64_t>(Vad::kFrameShift - (s.pos % Vad::kFrameShift), n - i);
    const int16_t* p = w.pcm.data() + i;
    if (settings_.vadEnabled) s.vad.process(p, static_cast<size_t>(k));
    s.pushRing(p, static_cast<size_t>(k));
    s.pos += k;
    i += k;
    const bool speech = !settings_.vadEnabled || s.vad.inSpeech();

    if (s.inUtt) {
      if (feedFrom < 0) feedFrom = i - k;
      const bool tooLong = s.pos - s.uttStart >= settings_.maxUtteranceSamples;
      if (!speech || tooLong) {
        if (!feed(i)) {
          fail();
          break;
        }
        endUtterance(s, out);
      } else if (handOverNow(s)) {
        if (!feed(i)) {
          fail();
          break;
        }
        {
          std::lock_guard<std::mutex> lk(poolMu_);
          ++handovers_;
        }
        endUtterance(s, out);  // the head of the waiters gets the decoder
        // Still in speech: a new utterance from the cut, no pre-roll.
        s.inUtt = true;
        s.uttStart = s.pos;
        if (!acquireDecoder(s)) {
          parked = true;
          break;
        }
        if (!startDecoding()) {
          fail();
          break;
        }
      }
    } else if (speech) {
      s.inUtt = true;
      s.uttStart = std::max<int64_t>(
          {s.pos - settings_.prerollSamples, s.lastUttEnd, s.pos - static_cast<int64_t>(s.ring.size()) + 1, 0});
      if (!acquireDecoder(s)) {
        // Park at the onset: everything up to here is consumed (and the
        // pre-roll is in the ring); the caller resubmits the rest.
        parked = true;
        break;
      }
      if (!startDecoding()) {
        fail();
        break;
      }
    }
  }
  if (!parked && out.error == ErrorCode::kNone) {
    if (!feed(i)) fail();
  }
  if (fed) countDecoded(fed);

  if (parked) {
    out.waiting = true;
  } else if (w.flush && i >= n && out.error == ErrorCode::kNone) {
    if (s.inUtt && s.dec) endUtterance(s, out);
    out.flushed = true;
  }
  if (s.inUtt && s.dec) {
    out.hasPartial = true;
    out.partial = s.dec->partial();
    out.partialStart = s.uttStart;
    out.partialEnd = s.pos;
  }
  out.consumed = static_cast<uint32_t>(i);
}

}  // namespace captiongate
