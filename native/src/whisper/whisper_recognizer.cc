#include "whisper_recognizer.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <deque>
#include <sstream>
#include <stdexcept>

namespace captiongate::whisper {

struct WhisperRecognizer::Stream : RecognizerStream {
  Vad vad;
  int64_t pos = 0;       // samples taken so far
  int64_t framePos = 0;  // start of the next 10 ms VAD frame
  std::vector<int16_t> pending;  // < one frame, waiting for the rest
  std::deque<int16_t> preroll;   // the last prerollSamples before the current frame
  bool inUtt = false;
  bool counted = false;  // inUtt as last added to inUtterance_
  int64_t uttStart = 0;
  std::vector<int16_t> utt;
  size_t lastPartialLen = 0;
  std::chrono::steady_clock::time_point lastPartialAt;  // or the utterance's start
};

struct WhisperRecognizer::Job {
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

WhisperRecognizer::WhisperRecognizer(WhisperSettings settings) : settings_(std::move(settings)) {}

WhisperRecognizer::~WhisperRecognizer() = default;

double WhisperRecognizer::deviceSelfTest(WhisperModel& device, WhisperModel& reference) {
  const auto audio = selfTestAudio();
  const int frames = 200;
  const auto mel = reference.logMel().compute(audio.data(), static_cast<int>(audio.size()), frames);
  std::vector<float> a, b;
  device.encode({mel.data()}, frames, &a);
  reference.encode({mel.data()}, frames, &b);
  return cosineSimilarity(a.data(), b.data(), a.size());
}

void WhisperRecognizer::load(RecognizerHost&) {
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
  modelBytes_.store(static_cast<double>(model->weightBytes()));
  model_ = std::move(model);
  loaded_.store(true);
}

std::unique_ptr<RecognizerStream> WhisperRecognizer::createStream(uint32_t, const StreamOptions& options) {
  auto s = std::make_unique<Stream>();
  std::string error;
  if (settings_.vadEnabled && !s->vad.init(withEndpoint(settings_.vad, options.endpointFrames), &error)) throw std::runtime_error(error);
  return s;
}

void WhisperRecognizer::closeStream(RecognizerStream& state, uint32_t) noexcept {
  Stream& s = static_cast<Stream&>(state);
  if (s.counted) inUtterance_.fetch_sub(1);
  s.counted = false;
}

RecognizerStats WhisperRecognizer::stats() const {
  RecognizerStats r;
  r.decoders = loaded_.load() ? 1 : 0;
  r.decodersInUse = inUtterance_.load();
  r.samplesDecoded = samplesDecoded_.load();
  r.modelBytes = modelBytes_.load();
  return r;
}

void WhisperRecognizer::release() noexcept {
  loaded_.store(false);
  modelBytes_.store(0);
  model_.reset();
}

void WhisperRecognizer::decode(const std::vector<DecodeJob>& in) {
  std::vector<Job> jobs;
  for (const DecodeJob& j : in) processWindow(static_cast<Stream&>(j.state), j.in, j.out, jobs);
  const auto now = std::chrono::steady_clock::now();
  const auto interval = std::chrono::milliseconds(settings_.partialIntervalMs);
  const size_t minNew = static_cast<size_t>(settings_.partialIntervalMs) * kSampleRate / 4000;  // a quarter interval
  std::vector<std::pair<Stream*, WindowOut*>> due;
  for (const DecodeJob& j : in) {
    Stream* s = &static_cast<Stream&>(j.state);
    const size_t n = s->utt.size();
    if (s->inUtt && n >= kSampleRate / 2 && n >= s->lastPartialLen + minNew && now - s->lastPartialAt >= interval)
      due.emplace_back(s, &j.out);
  }
  // Finals always run. Partials get the batch slots finals leave free in
  // this call (none once finals fill a batch), shortest first: they are
  // tentative, and under load they are what gives way. The others are
  // retried next call, so only the chosen ones copy their audio.
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
  samplesDecoded_.fetch_add(decoded);
  for (const DecodeJob& j : in) {
    Stream& s = static_cast<Stream&>(j.state);
    if (s.inUtt != s.counted) {
      inUtterance_.fetch_add(s.inUtt ? 1 : -1);
      s.counted = s.inUtt;
    }
  }
}

// The base guarantees w.start == s.pos: the window continues the stream.
void WhisperRecognizer::processWindow(Stream& s, const WindowIn& w, WindowOut& out, std::vector<Job>& jobs) {
  const int64_t n = static_cast<int64_t>(w.pcm.size());
  auto endUtterance = [&]() {
    if (s.utt.empty()) {
      // Opened with no audio yet (a max-length cut right before a flush):
      // nothing to decode, but it still ends with its (empty) final.
      Utterance u;
      u.startSample = s.uttStart;
      u.endSample = s.uttStart;
      out.finals.push_back(std::move(u));
    } else {
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
    // The pre-roll of the next utterance never reaches back into this one.
    s.preroll.clear();
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
      if (s.utt.size() >= static_cast<size_t>(settings_.maxUtteranceSamples)) endUtterance();
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
          endUtterance();
        } else if (s.utt.size() >= static_cast<size_t>(settings_.maxUtteranceSamples)) {
          endUtterance();
          s.inUtt = true;  // still speaking: the next utterance starts here
          s.uttStart = s.framePos + static_cast<int64_t>(frame);
          s.lastPartialAt = std::chrono::steady_clock::now();
        }
      }
    }
    s.framePos += frame;
  };
  int64_t i = 0;
  while (i < n) {
    const size_t take = std::min<size_t>(frame - s.pending.size(), static_cast<size_t>(n - i));
    s.pending.insert(s.pending.end(), w.pcm.begin() + i, w.pcm.begin() + i + static_cast<int64_t>(take));
    i += static_cast<int64_t>(take);
    if (s.pending.size() < frame) break;
    feedFrame(s.pending.data());
    s.pending.clear();
  }
  s.pos += n;
  out.consumed = static_cast<uint32_t>(n);
  if (w.flush) {
    if (!s.pending.empty()) {
      if (s.inUtt) s.utt.insert(s.utt.end(), s.pending.begin(), s.pending.end());
      s.framePos += static_cast<int64_t>(s.pending.size());
      s.pending.clear();
    }
    if (s.inUtt) endUtterance();
    out.flushed = true;
  }
}

void WhisperRecognizer::runJobs(std::vector<Job>& jobs) {
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
    // Text that is only punctuation ("." on white noise) is no caption.
    std::string text = silent ? std::string() : trim(r.text);
    if (std::none_of(text.begin(), text.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; })) text.clear();
    if (!j.final) {
      j.out->hasPartial = true;
      j.out->partial = text;
      j.out->partialStart = j.start;
      j.out->partialEnd = j.start + static_cast<int64_t>(j.audio.size());
      j.stream->lastPartialLen = j.audio.size();
      j.stream->lastPartialAt = std::chrono::steady_clock::now();
      continue;
    }
    // An utterance that decoded to nothing still ends with its final (empty
    // text, no words), so a partial already shown is closed.
    Utterance u;
    u.text = text;
    u.startSample = j.start;
    u.endSample = j.start + static_cast<int64_t>(j.audio.size());
    // Word times: each segment's span shared out by word length. Whisper
    // times segments, not words (see docs/whisper.md).
    const float conf = std::min(1.0f, std::max(0.0f, std::exp(r.avgLogprob)));
    for (const auto& seg : r.segments) {
      if (text.empty()) break;  // rejected as silence: no words either
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
