#include "engine.h"

#include <algorithm>

namespace captiongate {

using Clock = std::chrono::steady_clock;

namespace {
double msSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}
}  // namespace

struct Engine::Stream {
  uint32_t id = 0;

  // Guarded by mu_.
  std::deque<std::pair<Batch*, size_t>> queue;
  bool running = false;   // a worker owns the worker-side state below
  bool queued = false;    // in runQueue_
  bool closed = false;
  bool waiting = false;   // in waiters_
  PsDecoder* reserved = nullptr;
  int faults = 0;
  Clock::time_point waitSince;

  // Worker-owned: touched only by the worker that set running = true.
  Vad vad;
  std::vector<int16_t> ring;  // last ring.size() samples, for pre-roll
  PsDecoder* dec = nullptr;
  CmnState cmn;
  int64_t pos = 0;            // samples consumed so far
  bool inUtt = false;         // VAD says speech; decoder may still be pending
  int64_t uttStart = 0;
  int64_t lastUttEnd = 0;
  double pendingWaitMs = 0;

  void pushRing(const int16_t* p, size_t n) {
    const size_t cap = ring.size();
    for (size_t i = 0; i < n; ++i) ring[static_cast<size_t>((pos + static_cast<int64_t>(i)) % static_cast<int64_t>(cap))] = p[i];
  }
  // Copies ring samples [from, pos) into out (from >= pos - ring.size()).
  void readRing(int64_t from, std::vector<int16_t>* out) const {
    const int64_t cap = static_cast<int64_t>(ring.size());
    out->clear();
    for (int64_t p = from; p < pos; ++p) out->push_back(ring[static_cast<size_t>(p % cap)]);
  }
};

Engine::Engine(EngineSettings settings, Notify notify)
    : settings_(std::move(settings)), notify_(std::move(notify)) {}

Engine::~Engine() {
  shutdown();
  streams_.clear();  // frees VAD front ends
  decoders_.clear();
}

bool Engine::load(std::string* error) {
  std::vector<std::unique_ptr<PsDecoder>> loaded;
  for (int i = 0; i < settings_.decoders; ++i) {
    auto d = PsDecoder::Create(settings_.search, error);
    if (!d) return false;
    loaded.push_back(std::move(d));
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    decoders_ = std::move(loaded);
    initialCmn_ = decoders_.front()->initialCmn();
    for (auto& d : decoders_) freeDecoders_.push_back(d.get());
    stats_.decoders = static_cast<int>(decoders_.size());
  }
  for (int i = 0; i < settings_.threads; ++i) workers_.emplace_back([this] { workerLoop(); });
  return true;
}

uint32_t Engine::openStream(std::string* error) {
  auto s = std::make_unique<Stream>();
  if (!s->vad.init(settings_.vad, error)) return 0;
  s->ring.assign(static_cast<size_t>(settings_.prerollSamples + 2 * Vad::kFrameShift), 0);
  std::lock_guard<std::mutex> lk(mu_);
  s->cmn = initialCmn_;
  if (stopFlag_) {
    *error = "engine is shut down";
    return 0;
  }
  if (decoders_.empty()) {
    *error = "engine is not loaded";
    return 0;
  }
  uint32_t id = nextStreamId_++;
  if (nextStreamId_ == 0) nextStreamId_ = 1;
  s->id = id;
  streams_[id] = std::move(s);
  return id;
}

bool Engine::streamOpen(uint32_t id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = streams_.find(id);
  return it != streams_.end() && !it->second->closed;
}

bool Engine::closeStream(uint32_t id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = streams_.find(id);
  if (it == streams_.end() || it->second->closed) return false;
  Stream* s = it->second.get();
  s->closed = true;
  while (!s->queue.empty()) {
    auto [b, idx] = s->queue.front();
    s->queue.pop_front();
    --stats_.queuedWindows;
    b->out[idx].stream = id;
    b->out[idx].error = ErrorCode::kStreamClosed;
    b->out[idx].errorMessage = "stream was closed before this window ran";
    completeWindow(b);
  }
  // Cleanup may end an utterance (milliseconds): do it on a worker.
  schedule(s);
  return true;
}

bool Engine::submit(std::unique_ptr<Batch> batch, std::string* error) {
  std::lock_guard<std::mutex> lk(mu_);
  if (stopFlag_) {
    *error = "engine is shut down";
    return false;
  }
  for (const auto& w : batch->in) {
    auto it = streams_.find(w.stream);
    if (it == streams_.end() || it->second->closed) {
      *error = "stream " + std::to_string(w.stream) + " is closed or unknown";
      return false;
    }
  }
  Batch* b = batch.get();
  b->out.resize(b->in.size());
  b->remaining = b->in.size();
  inflight_[b->id] = std::move(batch);
  if (b->remaining == 0) {
    b->remaining = 1;
    completeWindow(b);
    return true;
  }
  for (size_t i = 0; i < b->in.size(); ++i) {
    Stream* s = streams_[b->in[i].stream].get();
    s->queue.emplace_back(b, i);
    ++stats_.queuedWindows;
    schedule(s);
  }
  return true;
}

void Engine::schedule(Stream* s) {
  if (s->running || s->queued) return;
  s->queued = true;
  runQueue_.push_back(s);
  cv_.notify_one();
}

void Engine::completeWindow(Batch* b) {
  if (--b->remaining > 0) return;
  auto it = inflight_.find(b->id);
  if (it == inflight_.end()) return;
  completed_.push_back(std::move(it->second));
  inflight_.erase(it);
  notify_();
}

std::vector<std::unique_ptr<Batch>> Engine::takeCompleted() {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<std::unique_ptr<Batch>> out;
  out.swap(completed_);
  return out;
}

std::vector<uint32_t> Engine::takeReady() {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<uint32_t> out;
  out.swap(ready_);
  return out;
}

void Engine::injectFault(uint32_t id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = streams_.find(id);
  if (it != streams_.end()) it->second->faults++;
}

EngineStats Engine::stats() {
  std::lock_guard<std::mutex> lk(mu_);
  EngineStats s = stats_;
  s.decodersInUse = static_cast<int>(decoders_.size() - freeDecoders_.size());
  s.streams = static_cast<int>(streams_.size());
  s.streamsWaiting = static_cast<int>(waiters_.size());
  return s;
}

void Engine::shutdown() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!stopFlag_) {
      stopFlag_ = true;
      stopping_.store(true);
      for (auto& [id, s] : streams_) {
        while (!s->queue.empty()) {
          auto [b, idx] = s->queue.front();
          s->queue.pop_front();
          --stats_.queuedWindows;
          b->out[idx].stream = id;
          b->out[idx].error = ErrorCode::kShutdown;
          b->out[idx].errorMessage = "engine shut down before this window ran";
          completeWindow(b);
        }
      }
    }
    cv_.notify_all();
  }
  std::lock_guard<std::mutex> jl(joinMu_);
  for (auto& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
}

void Engine::workerLoop() {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    cv_.wait(lk, [this] { return stopFlag_ || !runQueue_.empty(); });
    if (runQueue_.empty()) {
      if (stopFlag_) return;
      continue;
    }
    Stream* s = runQueue_.front();
    runQueue_.pop_front();
    s->queued = false;
    s->running = true;

    if (s->closed) {
      lk.unlock();
      cleanupStream(*s);
      lk.lock();
      if (s->reserved) {
        // Pass an unused reservation on.
        PsDecoder* d = s->reserved;
        s->reserved = nullptr;
        s->dec = d;
        lk.unlock();
        releaseDecoder(*s);
        lk.lock();
      }
      if (s->waiting) {
        waiters_.erase(std::remove(waiters_.begin(), waiters_.end(), s), waiters_.end());
        s->waiting = false;
      }
      streams_.erase(s->id);  // destroys s
      continue;
    }
    if (s->queue.empty()) {
      s->running = false;
      continue;
    }
    auto [b, idx] = s->queue.front();
    s->queue.pop_front();
    --stats_.queuedWindows;
    const bool fault = s->faults > 0;
    if (fault) --s->faults;
    lk.unlock();

    const auto t0 = Clock::now();
    const int64_t posBefore = s->pos;
    WindowOut& out = b->out[idx];
    const WindowIn& in = b->in[idx];
    out.stream = s->id;
    if (fault) {
      out.error = ErrorCode::kDecodeFailed;
      out.errorMessage = "decoder failed on this window (injected fault)";
      out.position = s->pos;
    } else {
      processWindow(*s, in, out);
    }
    const double busy = msSince(t0);
    const int64_t advanced = s->pos - posBefore;

    lk.lock();
    stats_.busyMs += busy;
    stats_.windowsProcessed++;
    stats_.samplesProcessed += static_cast<uint64_t>(advanced);
    completeWindow(b);
    s->running = false;
    if (s->closed || !s->queue.empty()) schedule(s);
  }
}

bool Engine::acquireDecoder(Stream& s) {
  std::lock_guard<std::mutex> lk(mu_);
  if (s.reserved) {
    s.dec = s.reserved;
    s.reserved = nullptr;
    s.pendingWaitMs = std::chrono::duration<double, std::milli>(Clock::now() - s.waitSince).count();
    stats_.decoderWaitMsTotal += s.pendingWaitMs;
    return true;
  }
  if (!s.waiting && waiters_.empty() && !freeDecoders_.empty()) {
    s.dec = freeDecoders_.back();
    freeDecoders_.pop_back();
    return true;
  }
  if (!s.waiting) {
    s.waiting = true;
    s.waitSince = Clock::now();
    waiters_.push_back(&s);
    stats_.decoderWaits++;
  }
  return false;
}

void Engine::releaseDecoder(Stream& s) {
  PsDecoder* d = s.dec;
  s.dec = nullptr;
  if (!d) return;
  std::lock_guard<std::mutex> lk(mu_);
  while (!waiters_.empty()) {
    Stream* w = waiters_.front();
    waiters_.pop_front();
    w->waiting = false;
    if (w->closed) continue;  // its cleanup will not need a decoder
    w->reserved = d;
    ready_.push_back(w->id);
    notify_();
    return;
  }
  freeDecoders_.push_back(d);
}

void Engine::endUtterance(Stream& s, WindowOut& out) {
  Utterance u;
  std::string err;
  if (!s.dec->endUtterance(settings_.wordConfidence, &u, &s.cmn, &err)) {
    out.error = ErrorCode::kDecodeFailed;
    out.errorMessage = err;
  }
  u.startSample = s.uttStart;
  u.endSample = s.pos;
  out.finals.push_back(std::move(u));
  out.endpoint = true;
  s.inUtt = false;
  s.lastUttEnd = s.pos;
  releaseDecoder(s);
}

void Engine::cleanupStream(Stream& s) {
  if (s.dec) {
    s.dec->abortUtterance();
    releaseDecoder(s);
  }
  s.inUtt = false;
}

void Engine::processWindow(Stream& s, const WindowIn& w, WindowOut& out) {
  const int64_t n = static_cast<int64_t>(w.pcm.size());
  if (w.start > s.pos) {
    out.error = ErrorCode::kBadWindow;
    out.errorMessage = "window starts at sample " + std::to_string(w.start) + " but the stream is at " +
                       std::to_string(s.pos);
    out.position = s.pos;
    return;
  }
  int64_t i = std::min(s.pos - w.start, n);  // skip what we already consumed
  std::string err;
  std::vector<int16_t> pre;

  auto startDecoding = [&]() -> bool {
    if (!s.dec->startUtterance(s.cmn, &err)) return false;
    s.readRing(s.uttStart, &pre);
    if (!s.dec->process(pre.data(), pre.size(), &err)) return false;
    {
      std::lock_guard<std::mutex> lk(mu_);
      stats_.samplesDecoded += pre.size();
    }
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
  };

  // A parked utterance resumes only with a decoder.
  if (s.inUtt && !s.dec) {
    if (!acquireDecoder(s)) {
      out.waiting = true;
      out.consumed = static_cast<uint32_t>(i);
      out.inSpeech = true;
      out.position = s.pos;
      return;
    }
    if (!startDecoding()) {
      fail();
      out.consumed = static_cast<uint32_t>(i);
      out.position = s.pos;
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
        if (!feed(i)) { fail(); break; }
        endUtterance(s, out);
      }
    } else if (speech) {
      s.inUtt = true;
      s.uttStart = std::max<int64_t>({s.pos - settings_.prerollSamples, s.lastUttEnd, s.pos - static_cast<int64_t>(s.ring.size()) + 1, 0});
      if (!acquireDecoder(s)) {
        // Park at the onset: everything up to here is consumed (and the
        // pre-roll is in the ring); the caller resubmits the rest.
        parked = true;
        break;
      }
      if (!startDecoding()) { fail(); break; }
    }
  }
  if (!parked && out.error == ErrorCode::kNone) {
    if (!feed(i)) fail();
  }
  if (fed) {
    std::lock_guard<std::mutex> lk(mu_);
    stats_.samplesDecoded += fed;
  }

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
  out.inSpeech = s.inUtt;
  out.position = s.pos;
}

}  // namespace captiongate
