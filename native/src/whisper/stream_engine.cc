#include "stream_engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <sstream>

namespace captiongate::whisper {

struct WhisperStreamEngine::Stream {
  uint32_t id = 0;
  bool closed = false;
  int faults = 0;
  Vad vad;
  int64_t pos = 0;       // samples taken so far
  int64_t framePos = 0;  // start of the next 10 ms VAD frame
  std::vector<int16_t> pending;  // < one frame, waiting for the rest
  std::deque<int16_t> preroll;   // the last prerollSamples before the current frame
  bool inUtt = false;
  int64_t uttStart = 0;
  std::vector<int16_t> utt;
  size_t lastPartialLen = 0;
  std::chrono::steady_clock::time_point lastPartialAt;  // or the utterance's start
};

struct WhisperStreamEngine::Job {
  bool final = false;
  std::vector<int16_t> audio;
  int64_t start = 0;
  WindowOut* out = nullptr;
  Stream* stream = nullptr;
};

namespace {

std::string trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) a++;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) b--;
  return s.substr(a, b - a);
}

std::vector<std::string> splitWords(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  std::string w;
  while (is >> w) out.push_back(w);
  return out;
}

// Partials re-decode at least this much context (5 s) rather than the
// finals' minimum: a third of the encoder cost at the default 15 s.
constexpr int kPartialMinFrames = 500;

int contextFrames(size_t samples, int minFrames) {
  // Audio frames plus 0.5 s, rounded up to whole seconds, at least minFrames.
  const int need = static_cast<int>((samples + kHop - 1) / kHop) + 50;
  const int rounded = (need + 99) / 100 * 100;
  return std::min(kWindowFrames, std::max(minFrames, rounded));
}

// A fixed, deterministic 2 s input: a chirp with harmonics and some noise.
std::vector<float> selfTestAudio() {
  std::vector<float> a(2 * kSampleRate);
  uint32_t s = 1;
  for (size_t i = 0; i < a.size(); i++) {
    const double t = static_cast<double>(i) / kSampleRate;
    const double f = 150 + 100 * t;
    s = s * 1664525u + 1013904223u;
    a[i] = static_cast<float>(0.3 * std::sin(2 * M_PI * f * t) + 0.1 * std::sin(4 * M_PI * f * t) +
                              0.02 * (static_cast<double>(s >> 8) / (1u << 24) - 0.5));
  }
  return a;
}

}  // namespace

WhisperStreamEngine::WhisperStreamEngine(WhisperEngineSettings settings, Notify notify)
    : settings_(std::move(settings)), notify_(std::move(notify)) {}

WhisperStreamEngine::~WhisperStreamEngine() { shutdown(); }

double WhisperStreamEngine::deviceSelfTest(WhisperModel& device, WhisperModel& reference) {
  const auto audio = selfTestAudio();
  const int frames = 200;
  const auto mel = reference.logMel().compute(audio.data(), static_cast<int>(audio.size()), frames);
  std::vector<float> a, b;
  device.encode({mel.data()}, frames, &a);
  reference.encode({mel.data()}, frames, &b);
  return cosineSimilarity(a.data(), b.data(), a.size());
}

bool WhisperStreamEngine::load(std::string* error) {
  try {
    std::unique_ptr<Device> dev;
    if (settings_.device == "cpu") dev = makeCpuDevice(settings_.threads);
    else if (settings_.device == "perturbed") dev = makePerturbedDevice(0.05f);
    else throw std::runtime_error("unknown device '" + settings_.device + "' (this build has: cpu)");
    auto model = std::make_unique<WhisperModel>(settings_.modelDir, std::move(dev));
    if (settings_.device != "cpu" || settings_.selfTest) {
      // Fail closed: a device whose encoder disagrees with the CPU reference
      // would caption confidently and wrongly.
      WhisperModel reference(settings_.modelDir, makeCpuDevice(settings_.threads));
      const double cos = deviceSelfTest(*model, reference);
      if (!(cos >= 0.999)) {
        std::ostringstream os;
        os << "device self-test failed: encoder output of device '" << model->device().name()
           << "' has cosine similarity " << cos << " to the CPU reference (at least 0.999 required)";
        throw std::runtime_error(os.str());
      }
    }
    model_ = std::move(model);
  } catch (const std::exception& e) {
    *error = e.what();
    return false;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    stats_.decoders = 1;
    stats_.modelBytes = static_cast<double>(model_->weightBytes());
  }
  worker_ = std::thread([this] { workerLoop(); });
  return true;
}

uint32_t WhisperStreamEngine::openStream(std::string* error) {
  auto s = std::make_unique<Stream>();
  if (settings_.vadEnabled && !s->vad.init(settings_.vad, error)) return 0;
  std::lock_guard<std::mutex> lk(mu_);
  if (stopping_) {
    *error = "engine is shut down";
    return 0;
  }
  s->id = nextStreamId_++;
  const uint32_t id = s->id;
  streams_.emplace(id, std::move(s));
  return id;
}

bool WhisperStreamEngine::closeStream(uint32_t id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = streams_.find(id);
  if (it == streams_.end() || it->second->closed) return false;
  it->second->closed = true;
  cv_.notify_one();
  return true;
}

void WhisperStreamEngine::injectFault(uint32_t id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = streams_.find(id);
  if (it != streams_.end()) it->second->faults++;
}

bool WhisperStreamEngine::submit(std::unique_ptr<Batch> batch, std::string* error) {
  std::lock_guard<std::mutex> lk(mu_);
  if (stopping_ || !model_) {
    *error = "engine is shut down";
    return false;
  }
  for (auto& w : batch->in) {
    auto it = streams_.find(w.stream);
    if (it == streams_.end() || it->second->closed) {
      *error = "stream " + std::to_string(w.stream) + " is not open";
      return false;
    }
  }
  batch->out.assign(batch->in.size(), WindowOut{});
  stats_.queuedWindows += batch->in.size();
  queue_.push_back(std::move(batch));
  cv_.notify_one();
  return true;
}

std::vector<std::unique_ptr<Batch>> WhisperStreamEngine::takeCompleted() {
  std::lock_guard<std::mutex> lk(mu_);
  return std::move(completed_);
}

EngineStats WhisperStreamEngine::stats() {
  std::lock_guard<std::mutex> lk(mu_);
  EngineStats s = stats_;
  s.streams = 0;
  s.decodersInUse = 0;
  for (auto& kv : streams_) {
    if (kv.second->closed) continue;
    s.streams++;
  }
  s.decodersInUse = stats_.decodersInUse;
  return s;
}

void WhisperStreamEngine::shutdown() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopFlag_ && !worker_.joinable()) return;
    stopFlag_ = true;
    stopping_ = true;
    cv_.notify_all();
  }
  if (worker_.joinable() && worker_.get_id() != std::this_thread::get_id()) worker_.join();
  std::lock_guard<std::mutex> lk(mu_);
  // Whatever was still queued completes with kShutdown.
  for (auto& b : queue_) {
    for (size_t i = 0; i < b->in.size(); i++) {
      b->out[i].stream = b->in[i].stream;
      b->out[i].error = ErrorCode::kShutdown;
      b->out[i].errorMessage = "engine shut down before the window ran";
    }
    completed_.push_back(std::move(b));
  }
  const bool any = !queue_.empty();
  queue_.clear();
  stats_.queuedWindows = 0;
  if (any && notify_) notify_();
}

void WhisperStreamEngine::workerLoop() {
  for (;;) {
    std::vector<std::unique_ptr<Batch>> round;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] {
        if (stopFlag_ || !queue_.empty()) return true;
        for (auto& kv : streams_)
          if (kv.second->closed) return true;
        return false;
      });
      // Closed streams go before the round: no Stream* outlives its stream.
      for (auto it = streams_.begin(); it != streams_.end();) {
        if (it->second->closed) it = streams_.erase(it);
        else ++it;
      }
      countUtterances();
      if (stopFlag_) return;
      while (!queue_.empty()) {
        round.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (!round.empty()) runRound(round);
  }
}

void WhisperStreamEngine::runRound(std::vector<std::unique_ptr<Batch>>& round) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Job> jobs;
  // Each stream seen this round, in first-seen order, with its last window.
  std::vector<std::pair<Stream*, WindowOut*>> touched;
  std::unordered_map<Stream*, size_t> touchedIndex;
  uint64_t windows = 0, samples = 0;
  for (auto& b : round) {
    for (size_t i = 0; i < b->in.size(); i++) {
      const WindowIn& w = b->in[i];
      WindowOut& out = b->out[i];
      out.stream = w.stream;
      windows++;
      Stream* s = nullptr;
      {
        std::lock_guard<std::mutex> lk(mu_);
        auto it = streams_.find(w.stream);
        if (it != streams_.end() && !it->second->closed) s = it->second.get();
        if (s && s->faults > 0) {
          s->faults--;
          out.error = ErrorCode::kDecodeFailed;
          out.errorMessage = "injected fault";
        }
      }
      if (!s) {
        out.error = ErrorCode::kStreamClosed;
        out.errorMessage = "stream closed";
        continue;
      }
      if (out.error != ErrorCode::kNone) {
        s->inUtt = false;
        s->utt.clear();
        s->pending.clear();
        s->pos = std::max(s->pos, w.start + static_cast<int64_t>(w.pcm.size()));
        s->framePos = s->pos;
        out.position = s->pos;
        continue;
      }
      samples += w.pcm.size();
      processWindow(*s, w, out, jobs);
      auto [at, added] = touchedIndex.emplace(s, touched.size());
      if (added) touched.emplace_back(s, &out);
      else touched[at->second].second = &out;
    }
  }
  const auto now = std::chrono::steady_clock::now();
  const auto interval = std::chrono::milliseconds(settings_.partialIntervalMs);
  const size_t minNew = static_cast<size_t>(settings_.partialIntervalMs) * kSampleRate / 4000;  // a quarter interval
  std::vector<std::pair<Stream*, WindowOut*>> due;
  for (auto& [s, out] : touched) {
    const size_t n = s->utt.size();
    if (s->inUtt && out->error == ErrorCode::kNone && n >= kSampleRate / 2 && n >= s->lastPartialLen + minNew &&
        now - s->lastPartialAt >= interval)
      due.emplace_back(s, out);
  }
  // Finals always run. Partials get the batch slots finals leave free in
  // this round (none once finals fill a batch), shortest first: they are
  // tentative, and under load they are what gives way. The others are
  // retried next round, so only the chosen ones copy their audio.
  const size_t B = static_cast<size_t>(std::max(1, settings_.maxBatch));
  const size_t room = jobs.size() >= B ? 0 : B - jobs.size();
  std::stable_sort(due.begin(), due.end(), [](auto& a, auto& b) { return a.first->utt.size() < b.first->utt.size(); });
  if (due.size() > room) due.resize(room);
  for (auto& [s, out] : due) {
    Job j;
    j.final = false;
    j.audio = s->utt;
    j.start = s->uttStart;
    j.out = out;
    j.stream = s;
    jobs.push_back(std::move(j));
  }
  uint64_t decoded = 0;
  for (auto& j : jobs) decoded += j.audio.size();
  runJobs(jobs);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  {
    std::lock_guard<std::mutex> lk(mu_);
    stats_.windowsProcessed += windows;
    stats_.samplesProcessed += samples;
    stats_.samplesDecoded += decoded;
    stats_.busyMs += ms;
    stats_.queuedWindows -= std::min<uint64_t>(stats_.queuedWindows, windows);
    countUtterances();
    for (auto& b : round) completed_.push_back(std::move(b));
  }
  if (notify_) notify_();
}

// Under mu_, on the worker (the only writer of inUtt).
void WhisperStreamEngine::countUtterances() {
  int n = 0;
  for (auto& kv : streams_) n += (!kv.second->closed && kv.second->inUtt) ? 1 : 0;
  stats_.decodersInUse = n;
}

void WhisperStreamEngine::processWindow(Stream& s, const WindowIn& w, WindowOut& out, std::vector<Job>& jobs) {
  const int64_t n = static_cast<int64_t>(w.pcm.size());
  if (w.start > s.pos) {
    out.error = ErrorCode::kBadWindow;
    out.errorMessage = "window starts at sample " + std::to_string(w.start) + " but the stream is at " + std::to_string(s.pos);
    out.position = s.pos;
    return;
  }
  auto endUtterance = [&](bool endpoint) {
    if (!s.utt.empty()) {
      Job j;
      j.final = true;
      j.audio = std::move(s.utt);
      j.start = s.uttStart;
      j.out = &out;
      j.stream = &s;
      jobs.push_back(std::move(j));
    }
    s.utt.clear();
    s.inUtt = false;
    s.lastPartialLen = 0;
    if (endpoint) out.endpoint = true;
  };
  const size_t frame = Vad::kFrameShift;
  auto feedFrame = [&](const int16_t* f) {
    if (!settings_.vadEnabled) {
      if (!s.inUtt) {
        s.inUtt = true;
        s.uttStart = s.framePos;
        s.lastPartialAt = std::chrono::steady_clock::now();
      }
      s.utt.insert(s.utt.end(), f, f + frame);
      if (s.utt.size() >= static_cast<size_t>(settings_.maxUtteranceSamples)) endUtterance(true);
    } else {
      const bool speech = s.vad.process(f, frame);
      if (!s.inUtt && speech) {
        s.inUtt = true;
        s.utt.assign(s.preroll.begin(), s.preroll.end());
        s.uttStart = s.framePos - static_cast<int64_t>(s.preroll.size());
        s.lastPartialLen = 0;
        s.lastPartialAt = std::chrono::steady_clock::now();
      }
      s.preroll.insert(s.preroll.end(), f, f + frame);
      while (s.preroll.size() > static_cast<size_t>(settings_.prerollSamples)) s.preroll.pop_front();
      if (s.inUtt) {
        s.utt.insert(s.utt.end(), f, f + frame);
        if (!speech) {
          endUtterance(true);
        } else if (s.utt.size() >= static_cast<size_t>(settings_.maxUtteranceSamples)) {
          endUtterance(true);
          s.inUtt = true;  // still speaking: the next utterance starts here
          s.uttStart = s.framePos + static_cast<int64_t>(frame);
          s.lastPartialAt = std::chrono::steady_clock::now();
        }
      }
    }
    s.framePos += frame;
  };
  int64_t i = std::min(s.pos - w.start, n);  // skip what was already taken
  while (i < n) {
    const size_t take = std::min<size_t>(frame - s.pending.size(), static_cast<size_t>(n - i));
    s.pending.insert(s.pending.end(), w.pcm.begin() + i, w.pcm.begin() + i + take);
    i += static_cast<int64_t>(take);
    if (s.pending.size() < frame) break;
    feedFrame(s.pending.data());
    s.pending.clear();
  }
  s.pos = std::max(s.pos, w.start + n);
  out.consumed = static_cast<uint32_t>(n);
  if (w.flush) {
    if (!s.pending.empty()) {
      if (s.inUtt) s.utt.insert(s.utt.end(), s.pending.begin(), s.pending.end());
      s.framePos += static_cast<int64_t>(s.pending.size());
      s.pending.clear();
    }
    if (s.inUtt) endUtterance(true);
    out.flushed = true;
  }
  out.inSpeech = s.inUtt;
  out.position = s.pos;
}

void WhisperStreamEngine::runJobs(std::vector<Job>& jobs) {
  if (jobs.empty()) return;
  const size_t B = static_cast<size_t>(std::max(1, settings_.maxBatch));
  // Each job's encoder context. A batch only holds jobs of equal context, so
  // a final's result never depends on what it was batched with.
  std::vector<int> frames(jobs.size());
  std::vector<size_t> finals, partials;
  for (size_t k = 0; k < jobs.size(); k++) {
    const int minFrames = jobs[k].final ? settings_.minContextFrames : std::min(settings_.minContextFrames, kPartialMinFrames);
    frames[k] = contextFrames(jobs[k].audio.size(), minFrames);
    (jobs[k].final ? finals : partials).push_back(k);
  }
  std::vector<std::vector<size_t>> batches;
  for (auto* group : {&finals, &partials}) {
    std::vector<size_t> g = *group;
    std::stable_sort(g.begin(), g.end(), [&](size_t a, size_t b) { return frames[a] < frames[b]; });
    for (size_t k : g) {
      if (batches.empty() || batches.back().size() >= B || frames[batches.back().front()] != frames[k] ||
          jobs[batches.back().front()].final != jobs[k].final)
        batches.emplace_back();
      batches.back().push_back(k);
    }
  }
  std::vector<DecodeResult> results(jobs.size());
  for (const auto& batch : batches) {
    const int f = frames[batch.front()];
    std::vector<std::vector<float>> mels;
    std::vector<const float*> ptrs;
    for (size_t k : batch) {
      const auto& a = jobs[k].audio;
      const size_t n = std::min(a.size(), static_cast<size_t>(f) * kHop);
      std::vector<float> x(n);
      for (size_t i = 0; i < n; i++) x[i] = a[i] / 32768.0f;
      mels.push_back(model_->logMel().compute(x.data(), static_cast<int>(n), f));
    }
    for (auto& m : mels) ptrs.push_back(m.data());
    std::vector<float> enc;
    model_->encode(ptrs, f, &enc);
    auto rs = model_->decode(enc.data(), static_cast<int>(ptrs.size()), f / 2, DecodeOptions{});
    for (size_t i = 0; i < batch.size(); i++) results[batch[i]] = std::move(rs[i]);
  }
  // Results go out in job order: a window that ended two utterances lists
  // their finals in time order.
  for (size_t k = 0; k < jobs.size(); k++) {
    Job& j = jobs[k];
    const DecodeResult& r = results[k];
    const double seconds = static_cast<double>(j.audio.size()) / kSampleRate;
    // Whisper's own silence rule: likely no speech and an unsure decode.
    const bool silent = r.noSpeechProb > settings_.noSpeechThreshold && r.avgLogprob < settings_.logprobThreshold;
    const std::string text = silent ? std::string() : trim(r.text);
    if (!j.final) {
      j.out->hasPartial = true;
      j.out->partial = text;
      j.out->partialStart = j.start;
      j.out->partialEnd = j.start + static_cast<int64_t>(j.audio.size());
      j.stream->lastPartialLen = j.audio.size();
      j.stream->lastPartialAt = std::chrono::steady_clock::now();
      continue;
    }
    if (text.empty()) continue;
    Utterance u;
    u.text = text;
    u.startSample = j.start;
    u.endSample = j.start + static_cast<int64_t>(j.audio.size());
    // Word times: each segment's span shared out by word length. Whisper
    // times segments, not words (see docs/whisper.md).
    const float conf = std::min(1.0f, std::max(0.0f, std::exp(r.avgLogprob)));
    for (const auto& seg : r.segments) {
      const auto words = splitWords(seg.text);
      if (words.empty()) continue;
      const double a = std::min<double>(seg.start, seconds);
      double b = std::min<double>(std::max(seg.end, seg.start), seconds);
      if (b <= a) b = std::min(seconds, a + 0.1 * words.size());
      size_t chars = 0;
      for (auto& w : words) chars += w.size() + 1;
      double t = a;
      for (auto& w : words) {
        const double d = (b - a) * (w.size() + 1) / std::max<size_t>(1, chars);
        Word wd;
        wd.text = w;
        wd.startFrame = static_cast<int32_t>(std::lround(t * 100));
        wd.endFrame = std::max(wd.startFrame, static_cast<int32_t>(std::lround((t + d) * 100)) - 1);
        wd.confidence = conf;
        u.words.push_back(wd);
        t += d;
      }
    }
    j.out->finals.push_back(std::move(u));
  }
}

}  // namespace captiongate::whisper
