#include "moonshine_recognizer.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <deque>
#include <sstream>
#include <stdexcept>

namespace captiongate::moonshine {

using Clock = std::chrono::steady_clock;

namespace {

constexpr int kRate = Model::kSampleRate;
constexpr size_t kFrame = Vad::kFrameShift;  // 10 ms
// Partials start once the utterance holds this much audio (pre-roll included:
// with the default 300 ms pre-roll, as soon as the VAD opens it) and only
// with at least kPartialNewSamples of audio since the last one.
constexpr size_t kPartialMinSamples = 4800;  // 0.3 s
constexpr size_t kPartialNewSamples = 1600;  // 0.1 s
// A thread with no final to run takes a partial predicted to cost up to this
// much even beyond the round's length.
constexpr double kPartialCapMs = 250;
// Where the model takes drafts (base), a partial is also the draft of the
// speculative final and the final: one that lags the speech by twenty
// tokens costs them twenty decoder steps (300 ms on base, under load), and
// the final waits for them. So there a partial may cost more (its encoder
// grows with the utterance: 200 ms at 6 s), and it decodes only the steps
// that fit (partialSteps), never fewer than kPartialMinSteps: its tokens are
// a prefix of the full decode, so it moves the draft on, where an unlimited
// decode of a long utterance would not fit at all and the draft would stop.
constexpr double kDraftPartialCapMs = 350;
constexpr int kPartialMinSteps = 3;
constexpr double kCadenceSlackMs = 10;
constexpr size_t kNoiseFrames = 150;  // 1.5 s
// In a draft's run (Model::transcribe), a position costs about this share of
// a single decoder step (base: 67 ms for 31 positions at 13.5 ms a step).
constexpr double kDraftPositionCost = 0.15;
constexpr size_t kEndpointHold = 1600;      // one 100 ms window
constexpr size_t kEndpointHoldMax = 16000;  // 1 s
// A loud frame that the VAD does not call speech, this long after the last
// loud frame, is not counted as loud: after the last word, a breath or a
// click is often 12 dB over the floor; the final's span ran on to it, and
// the speculative final for the span to the word was thrown away. Nearer
// than this it is the end of a word (a soft consonant the VAD often calls
// non-speech), and it counts.
constexpr size_t kUnvoicedLoudGap = 2400;  // 150 ms
// The preview model's text is first shown only where the main model hears
// speech it cannot read yet: its decode of the same round ended at once with
// a probability under this (then the text stays up until the main model has
// its own). Base's is 0.96 and up on noise bursts and white noise (which it
// never gives text), where tiny reads "Don't" at 0.69; on LibriVox and flite
// openings it has no text for yet, 0.15-0.74 after the first 100 ms
// (docs/moonshine.md, policy 8).
constexpr double kPreviewMaxEosProb = 0.9;

double frameDb(const int16_t* f) {
  double e = 0;
  for (size_t i = 0; i < kFrame; i++) e += static_cast<double>(f[i]) * f[i];
  e /= static_cast<double>(kFrame) * 32768.0 * 32768.0;
  return std::max(-100.0, 10.0 * std::log10(e + 1e-12));
}

std::vector<std::string> splitWords(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  std::string w;
  while (is >> w) out.push_back(w);
  return out;
}

std::vector<float> toFloat(const std::vector<int16_t>& a, size_t n) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; i++) x[i] = a[i] / 32768.0f;
  return x;
}

}  // namespace

bool hasWords(const std::string& text) {
  return std::any_of(text.begin(), text.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; });
}

bool plausible(const std::string& text, double meanProb, double minMeanProb, double unfinishedMinProb) {
  if (!hasWords(text) || meanProb < minMeanProb) return false;
  const char last = text.back();
  const bool finished = last == '.' || last == ',' || last == '?' || last == '!' || last == ';' || last == ':' || last == '"' || last == '\'';
  return finished || meanProb >= unfinishedMinProb;
}

struct MoonshineRecognizer::Stream : RecognizerStream {
  Vad vad;
  int64_t pos = 0;       // samples taken so far
  int64_t framePos = 0;  // start of the next 10 ms frame
  std::vector<int16_t> pending;  // < one frame, waiting for the rest
  std::deque<int16_t> preroll;   // the last prerollSamples before the current frame
  bool inUtt = false;
  bool counted = false;  // inUtt as last added to inUtterance_
  int64_t uttStart = 0;
  int64_t lastFinalEnd = 0;  // stream position where the last final's span ended
  std::vector<int16_t> utt;
  // Loudness (frames over the noise floor; see kUnvoicedLoudGap), in samples of `utt`.
  // Noise floor: the quietest 10 ms frame of the last 1.5 s (minimum
  // statistics), never below -70 dBFS (digital silence is no room's floor).
  std::deque<double> recentDb;
  double noiseDb = -70;
  size_t firstLoud = 0;    // start of the first loud frame
  size_t lastLoudEnd = 0;  // end of the last loud frame; 0: none yet
  // Speculative final: the span [0, specEnd) decoded while the pause lasts.
  size_t vadEndedAt = 0;   // where the VAD left speech, while the endpoint is held (0: in speech)
  size_t specWanted = 0;   // a pause reached tailSamples: decode this span this round
  size_t specEnd = 0;      // span of `spec` (0: none)
  Transcript spec;
  // The tokens (no EOS) of the open utterance's latest decode: the draft of
  // its next one (empty where the model takes no drafts: tiny).
  std::vector<int64_t> hyp;
  // Partials.
  size_t lastPartialLen = 0;
  Clock::time_point lastPartialAt;
  double lastPartialMs = 0;
  bool shown = false;         // a decode of the open utterance has given text
  bool previewShown = false;  // the preview model's text is the partial (until `shown`)
  double mainEosProb = 1;     // the main model's latest decode of the utterance: Transcript::firstEosProb
};

struct MoonshineRecognizer::Job {
  enum Kind { kFinal, kSpec, kPartial } kind = kFinal;
  Stream* stream = nullptr;
  WindowOut* out = nullptr;
  size_t finalIndex = 0;  // kFinal: its slot in out->finals
  size_t span = 0;        // samples of the utterance decoded
  size_t wordsFrom = 0;   // kFinal: where its words are shared out (the loud part)
  size_t wordsTo = 0;
  std::vector<float> audio;
  std::vector<int64_t> draft;  // the stream's hyp when the job was made
  int maxSteps = 0;            // kPartial: its step budget (partialSteps; 0: none)
  bool preview = false;        // kPartial: decoded by the preview model
  int beams = 1;               // kFinal, kSpec: finalBeamWidth (> 1: a beam search, no draft; runJobs)
  Transcript result;
  std::string error;
  double predicted = 0;
  double ms = 0;      // its share of its batch's run time
  Clock::time_point roundAt;  // when its round began (partials are spaced from there)
  bool done = false;  // the result is already there (a matching speculative final)
};

MoonshineRecognizer::MoonshineRecognizer(MoonshineSettings settings) : settings_(std::move(settings)) {}

MoonshineRecognizer::~MoonshineRecognizer() = default;

static long rssKb() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  long pages = 0, resident = 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return resident * 4;
}

void MoonshineRecognizer::warmUp(const Model& m, const DecodeOptions& o, Cost& cost, int beams) {
  // The first runs of a session allocate its arena and pick kernels. A
  // fixed 2 s chirp also seeds the cost model the rounds plan with.
  std::vector<float> chirp(2 * kRate);
  for (size_t i = 0; i < chirp.size(); i++) {
    const double t = static_cast<double>(i) / kRate;
    chirp[i] = static_cast<float>(0.2 * std::sin(2 * M_PI * (150 + 100 * t) * t));
  }
  for (int k = 0; k < 2; k++) {
    const Transcript t = m.transcribe(chirp, o);
    cost.encMsPerSecond.store(t.encodeMs / 2.0);
    cost.stepMs.store(t.decodeMs / std::max(1, t.steps));
  }
  if (beams > 1) {
    DecodeOptions b = o;
    b.beamWidth = beams;
    const Transcript t = m.transcribe(chirp, b);
    cost.beamStepMs.store(t.decodeMs / std::max(1, t.steps));
  }
}

void MoonshineRecognizer::load(RecognizerHost&) {
  const long before = rssKb();
  auto model = std::make_unique<Model>(settings_.model);
  warmUp(*model, settings_.decode, cost_, settings_.finalBeamWidth);
  double files = model->fileBytes();
  std::unique_ptr<Model> preview;
  if (!settings_.preview.dir.empty()) {
    preview = std::make_unique<Model>(settings_.preview);
    warmUp(*preview, settings_.decode, previewCost_, 1);
    files += preview->fileBytes();
  }
  const long after = rssKb();
  modelBytes_.store(std::max(files, static_cast<double>(after - before) * 1024.0));
  model_ = std::move(model);
  preview_ = std::move(preview);
  loaded_.store(true);
}

std::unique_ptr<RecognizerStream> MoonshineRecognizer::createStream(uint32_t, const StreamOptions& options) {
  auto s = std::make_unique<Stream>();
  std::string error;
  if (settings_.vadEnabled && !s->vad.init(withEndpoint(settings_.vad, options.endpointFrames), &error)) throw std::runtime_error(error);
  return s;
}

void MoonshineRecognizer::closeStream(RecognizerStream& state, uint32_t) noexcept {
  Stream& s = static_cast<Stream&>(state);
  if (s.counted) inUtterance_.fetch_sub(1);
  s.counted = false;
}

RecognizerStats MoonshineRecognizer::stats() const {
  RecognizerStats r;
  r.decoders = loaded_.load() ? 1 : 0;
  r.decodersInUse = inUtterance_.load();
  r.samplesDecoded = samplesDecoded_.load();
  r.modelBytes = modelBytes_.load();
  return r;
}

void MoonshineRecognizer::release() noexcept {
  loaded_.store(false);
  modelBytes_.store(0);
  preview_.reset();
  model_.reset();
}

// ---------------------------------------------------------------- cost model

double MoonshineRecognizer::predictMs(size_t samples, size_t draft, int maxSteps, bool preview, int beams) const {
  const Cost& cost = preview ? previewCost_ : cost_;
  const double sec = static_cast<double>(std::max(samples, Model::kMinSamples)) / kRate;
  const double tokens = std::min(std::ceil(sec * settings_.decode.maxTokensPerSecond), 4.5 * sec + 2);
  // With a draft, the tokens it holds come from one run (kDraftPositionCost each).
  const double d = static_cast<double>(draft);
  double single = draft > 0 ? std::max(1.0, tokens - d) + 1 : tokens + 1;
  if (maxSteps > 0) single = std::min(single, static_cast<double>(maxSteps));
  const double steps = single + (draft > 0 ? 1 + kDraftPositionCost * d : 0);
  const std::atomic<double>& stepMs = beams > 1 ? cost.beamStepMs : cost.stepMs;
  return cost.encMsPerSecond.load(std::memory_order_relaxed) * sec + stepMs.load(std::memory_order_relaxed) * steps;
}

double MoonshineRecognizer::partialCapMs() const { return model_->takesDrafts() ? kDraftPartialCapMs : kPartialCapMs; }

int MoonshineRecognizer::partialSteps(size_t samples, size_t draft) const {
  if (!model_->takesDrafts()) return 0;
  // What is left of the cap after the encoder and the draft's run, in steps.
  const double step = std::max(1.0, cost_.stepMs.load(std::memory_order_relaxed));
  const double fixed = predictMs(samples, draft, 1) - step;
  return std::max(kPartialMinSteps, static_cast<int>((partialCapMs() - fixed) / step));
}

void MoonshineRecognizer::learn(Cost& cost, const Transcript& t, size_t samples, size_t rows) {
  const double sec = static_cast<double>(std::max(samples, Model::kMinSamples)) / kRate * static_cast<double>(rows);
  if (sec > 0.2) cost.encMsPerSecond.store(0.8 * cost.encMsPerSecond.load(std::memory_order_relaxed) + 0.2 * (t.encodeMs / sec), std::memory_order_relaxed);
  // A draft's run counts as the steps it stands for (see predictMs); a
  // decode done again without its draft is not a step's cost.
  const double steps = t.steps + kDraftPositionCost * static_cast<double>(t.draftTokens);
  std::atomic<double>& stepMs = t.beams > 1 ? cost.beamStepMs : cost.stepMs;
  if (t.steps > 0 && !t.draftRedone) stepMs.store(0.8 * stepMs.load(std::memory_order_relaxed) + 0.2 * (t.decodeMs / steps), std::memory_order_relaxed);
}

double MoonshineRecognizer::refillCredit(double spendMs) {
  std::lock_guard<std::mutex> lock(creditMu_);
  const auto now = Clock::now();
  const double perMs = std::max(1, settings_.threads) * settings_.partialLoadShare;
  const double cap = static_cast<double>(settings_.roundMs) * std::max(1, settings_.threads);
  const double wallMs = creditAt_ == Clock::time_point() ? cap : std::chrono::duration<double, std::milli>(now - creditAt_).count();
  creditAt_ = now;
  creditMs_ = std::min(cap, creditMs_ + wallMs * perMs);
  spendLocked(spendMs);
  return creditMs_;
}

void MoonshineRecognizer::spendCredit(double ms) {
  std::lock_guard<std::mutex> lock(creditMu_);
  spendLocked(ms);
}

void MoonshineRecognizer::spendLocked(double ms) {
  // The debt is bounded: after a burst of finals, partials resume within about a second.
  creditMs_ = std::max(creditMs_ - ms, -1000.0 * std::max(1, settings_.threads) * settings_.partialLoadShare);
}

// ---------------------------------------------------------------- a round

void MoonshineRecognizer::decode(const std::vector<DecodeJob>& in) {
  const auto now = Clock::now();
  std::vector<Job> jobs;
  for (const DecodeJob& j : in) processWindow(static_cast<Stream&>(j.state), j.in, j.out, jobs);
  // Speculative finals: a pause reached tailSamples in this window.
  for (const DecodeJob& j : in) {
    Stream& s = static_cast<Stream&>(j.state);
    if (!s.inUtt || s.specWanted == 0) continue;
    Job job;
    job.kind = Job::kSpec;
    job.stream = &s;
    job.out = &j.out;
    job.roundAt = now;
    job.span = s.specWanted;
    job.audio = toFloat(s.utt, s.specWanted);
    job.beams = settings_.finalBeamWidth;
    if (job.beams == 1) job.draft = s.hyp;
    jobs.push_back(std::move(job));
    s.specWanted = 0;
  }
  // Every final and speculative final runs. Partials fill the round up to
  // roundMs of predicted work (the stalest first); a round with nothing
  // else takes one partial predicted to cost up to partialCapMs(). A
  // preview decode rides on its main partial's admission, over that bound
  // (it is charged to the credit all the same).
  double load = 0;
  for (Job& j : jobs) {
    j.predicted = j.done ? 0 : predictMs(j.audio.size(), j.draft.size(), 0, false, j.beams);
    load += j.predicted;
  }
  // What the workers have left for partials, this round's finals taken out.
  double credit = refillCredit(load);
  std::vector<std::pair<Stream*, WindowOut*>> due;
  for (const DecodeJob& j : in) {
    Stream* s = &static_cast<Stream&>(j.state);
    if (!s->inUtt || s->utt.size() < kPartialMinSamples || s->utt.size() < s->lastPartialLen + kPartialNewSamples) continue;
    // Only with speech the last partial has not seen: a pause re-decoded
    // says nothing new (its speculative final does), and a partial running
    // when the endpoint comes would hold up the final.
    if (s->lastLoudEnd <= s->lastPartialLen) continue;
    bool specThisRound = false;
    for (const Job& x : jobs) specThisRound = specThisRound || (x.kind == Job::kSpec && x.stream == s);
    if (specThisRound) continue;
    // At most every partialIntervalMs, start to start, and once the
    // utterance has shown text, a stream spends at most a third of a thread
    // on its partials (they grow with the utterance). Before that the first
    // words are what the talker waits for, and the decodes are short.
    // Windows of a real-time stream come every windowMs with some jitter:
    // kCadenceSlackMs keeps an interval of one window from skipping every
    // other one.
    const double waitMs = s->shown ? std::max<double>(settings_.partialIntervalMs, 3 * s->lastPartialMs) : settings_.partialIntervalMs;
    if (std::chrono::duration<double, std::milli>(now - s->lastPartialAt).count() + kCadenceSlackMs < waitMs) continue;
    due.emplace_back(s, &j.out);
  }
  std::stable_sort(due.begin(), due.end(), [](auto& a, auto& b) { return a.first->lastPartialAt < b.first->lastPartialAt; });
  // Takes a partial predicted to cost c into the round, if it fits.
  auto admit = [&](double c) {
    if (!(load + c <= settings_.roundMs || (load == 0 && c <= partialCapMs()))) return false;
    // Under load, partials come less often (silently); a long one may take the credit into debt.
    if (credit <= 0 || credit < std::min(c, static_cast<double>(settings_.roundMs))) return false;
    credit -= c;
    spendCredit(c);
    load += c;
    return true;
  };
  auto partial = [&](Stream* s, WindowOut* out, bool preview, int maxSteps, double c) {
    Job job;
    job.kind = Job::kPartial;
    job.preview = preview;
    job.stream = s;
    job.out = out;
    job.roundAt = now;
    job.span = s->utt.size();
    job.audio = toFloat(s->utt, s->utt.size());
    if (!preview) job.draft = s->hyp;
    job.maxSteps = maxSteps;
    job.predicted = c;
    jobs.push_back(std::move(job));
  };
  for (auto& [s, out] : due) {
    const int maxSteps = partialSteps(s->utt.size(), s->hyp.size());
    const double c = predictMs(s->utt.size(), s->hyp.size(), maxSteps);
    if (!admit(c)) continue;
    partial(s, out, false, maxSteps, c);
    // Until the main model has text for the utterance, the preview model
    // decodes the same audio beside it, and only beside it: its text is
    // shown only by what the main model's decode of the same round says
    // (runJobs), and it must not take the credit the main model's partials
    // need. It rides on the main partial's admission (it costs a fraction
    // of it) and is charged to the same credit.
    if (preview_ && !s->shown) {
      const double pc = predictMs(s->utt.size(), 0, 0, true);
      credit -= pc;
      spendCredit(pc);
      load += pc;
      partial(s, out, true, 0, pc);
    }
  }
  uint64_t decoded = 0;
  for (auto& j : jobs)
    if (!j.preview) decoded += j.audio.size();  // the main model's audio (the preview's is the same again)
  runJobs(jobs);
  samplesDecoded_.fetch_add(decoded);
  // The credit was spent on predictions: square it with what the runs took.
  double error = 0;
  for (const Job& j : jobs)
    if (!j.done && j.error.empty()) error += j.ms - j.predicted;
  spendCredit(error);
  for (const DecodeJob& j : in) {
    Stream& s = static_cast<Stream&>(j.state);
    if (s.inUtt != s.counted) {
      inUtterance_.fetch_add(s.inUtt ? 1 : -1);
      s.counted = s.inUtt;
    }
  }
}

// The base guarantees w.start == s.pos: the window continues the stream.
void MoonshineRecognizer::processWindow(Stream& s, const WindowIn& w, WindowOut& out, std::vector<Job>& jobs) {
  const int64_t n = static_cast<int64_t>(w.pcm.size());
  const size_t tail = static_cast<size_t>(std::max(0, settings_.tailSamples));
  auto isLoud = [&](double db) { return db >= s.noiseDb + settings_.loudDb; };
  // Ends the open utterance. At a VAD endpoint the span stops `tail` after
  // the last loud frame; at a flush or a length cut it is all the audio.
  auto endUtterance = [&](bool endpoint) {
    size_t span = s.utt.size();
    if (endpoint && s.lastLoudEnd > 0) span = std::min(span, s.lastLoudEnd + tail);
    // The utterance runs to the endpoint; its text comes from `span`.
    Utterance u;
    u.startSample = s.uttStart;
    u.endSample = s.uttStart + static_cast<int64_t>(s.utt.size());
    s.lastFinalEnd = u.endSample;
    const size_t index = out.finals.size();
    out.finals.push_back(std::move(u));
    if (span > 0) {
      Job j;
      j.kind = Job::kFinal;
      j.stream = &s;
      j.out = &out;
      j.finalIndex = index;
      j.span = span;
      j.wordsFrom = s.lastLoudEnd > 0 ? s.firstLoud : 0;
      j.wordsTo = s.lastLoudEnd > 0 ? std::min(s.lastLoudEnd, span) : span;
      if (s.specEnd == span) {
        // The speculative final decoded exactly this span: it is the final.
        j.result = std::move(s.spec);
        j.done = true;
      } else {
        j.audio = toFloat(s.utt, span);
        j.beams = settings_.finalBeamWidth;
        if (j.beams == 1) j.draft = s.hyp;
      }
      jobs.push_back(std::move(j));
    }
    // (An utterance opened with no audio yet, a length cut right before a
    // flush, ends with its empty final.)
    s.utt.clear();
    s.inUtt = false;
    s.lastPartialLen = 0;
    s.lastPartialMs = 0;
    s.shown = false;
    s.previewShown = false;
    s.mainEosProb = 1;
    s.firstLoud = 0;
    s.lastLoudEnd = 0;
    s.specWanted = 0;
    s.specEnd = 0;
    s.spec = Transcript();
    s.hyp.clear();
    s.vadEndedAt = 0;
  };
  auto openUtterance = [&](int64_t start, const std::vector<int16_t>& audio) {
    s.inUtt = true;
    s.utt = audio;
    s.uttStart = start;
    s.lastPartialLen = 0;
    s.lastPartialMs = 0;
    s.shown = false;
    s.previewShown = false;
    s.mainEosProb = 1;
    s.lastPartialAt = Clock::time_point();  // the first partial may come at once
    s.hyp.clear();
    s.firstLoud = 0;
    s.lastLoudEnd = 0;
    s.vadEndedAt = 0;
    for (size_t k = 0; k + kFrame <= s.utt.size(); k += kFrame) {
      if (!isLoud(frameDb(s.utt.data() + k))) continue;
      if (s.lastLoudEnd == 0) s.firstLoud = k;
      s.lastLoudEnd = k + kFrame;
    }
  };
  auto feedFrame = [&](const int16_t* f) {
    const double db = frameDb(f);
    s.recentDb.push_back(db);
    if (s.recentDb.size() > kNoiseFrames) s.recentDb.pop_front();
    s.noiseDb = std::max(-70.0, *std::min_element(s.recentDb.begin(), s.recentDb.end()));
    bool speech = true;
    // Inside an utterance, a frame near the noise floor is silence to the
    // endpoint whatever the VAD's front end says: its noise tracker lags,
    // and it calls speech a while after the last word, or the drop to
    // digital silence (what WebRTC sends for a muted or quiet talker): the
    // endpoint of LibriVox clip 0930 came 980 ms after its last word, where
    // vad.endMs is 500. A talker who stays under this for vad.endMs (a far,
    // quiet voice in a noisy room) gets an endpoint mid-speech.
    if (settings_.vadEnabled) speech = s.vad.process(f, kFrame, s.inUtt && db < s.noiseDb + settings_.quietDb);
    bool loud = isLoud(db);
    if (loud && settings_.vadEnabled && !s.vad.frameSpeech() && s.inUtt && s.lastLoudEnd > 0 &&
        s.utt.size() >= s.lastLoudEnd + kUnvoicedLoudGap) {
      loud = false;
    }
    if (!s.inUtt && speech) {
      if (settings_.vadEnabled) {
        // The pre-roll, but none of the audio the previous final covered.
        const int64_t from = std::max(s.framePos - static_cast<int64_t>(s.preroll.size()), s.lastFinalEnd);
        const size_t skip = static_cast<size_t>(from - (s.framePos - static_cast<int64_t>(s.preroll.size())));
        openUtterance(from, std::vector<int16_t>(s.preroll.begin() + static_cast<std::ptrdiff_t>(std::min(skip, s.preroll.size())), s.preroll.end()));
      } else {
        openUtterance(s.framePos, {});
      }
    }
    if (settings_.vadEnabled) {
      s.preroll.insert(s.preroll.end(), f, f + kFrame);
      while (s.preroll.size() > static_cast<size_t>(settings_.prerollSamples)) s.preroll.pop_front();
    }
    if (s.inUtt) {
      s.utt.insert(s.utt.end(), f, f + kFrame);
      if (loud) {
        if (s.lastLoudEnd == 0) s.firstLoud = s.utt.size() - kFrame;
        s.lastLoudEnd = s.utt.size();
      }
      if (speech) s.vadEndedAt = 0;
      else if (s.vadEndedAt == 0) s.vadEndedAt = s.utt.size();
      // The VAD's endpoint, held until the pause after the last loud frame
      // is tail + one window long (at most 1 s): the speculative final for
      // that span then runs a window before the endpoint. The fe VAD often
      // calls a soft sentence ending silence 200-300 ms before it is.
      const bool held = s.lastLoudEnd > 0 && s.utt.size() < s.lastLoudEnd + tail + kEndpointHold &&
                        s.utt.size() < s.vadEndedAt + kEndpointHoldMax;
      if (!speech && !held) {
        endUtterance(true);
      } else if (s.utt.size() >= static_cast<size_t>(settings_.maxUtteranceSamples)) {
        endUtterance(false);
        if (settings_.vadEnabled) openUtterance(s.framePos + static_cast<int64_t>(kFrame), {});  // still speaking
      } else if (tail > 0 && s.lastLoudEnd > 0 && s.utt.size() == s.lastLoudEnd + tail && s.specEnd != s.utt.size()) {
        s.specWanted = s.utt.size();  // a pause of `tail`: this may be the final's span
      }
    }
    s.framePos += static_cast<int64_t>(kFrame);
  };
  int64_t i = 0;
  while (i < n) {
    const size_t take = std::min<size_t>(kFrame - s.pending.size(), static_cast<size_t>(n - i));
    s.pending.insert(s.pending.end(), w.pcm.begin() + i, w.pcm.begin() + i + static_cast<int64_t>(take));
    i += static_cast<int64_t>(take);
    if (s.pending.size() < kFrame) break;
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
    if (s.inUtt) endUtterance(false);
    out.flushed = true;
  }
}

void MoonshineRecognizer::runJobs(std::vector<Job>& jobs) {
  // Batches: one job each, or (rows independent: base) jobs of equal length.
  std::vector<std::vector<size_t>> batches;
  std::vector<size_t> todo;
  for (size_t k = 0; k < jobs.size(); k++)
    if (!jobs[k].done) todo.push_back(k);
  const size_t B = static_cast<size_t>(std::max(1, settings_.maxBatch));
  for (size_t k : todo) {
    bool placed = false;
    // A job with a draft runs alone: a draft serves a one-row run. Rows of
    // a batch share its step budget. The preview model (tiny) takes no batches.
    if (model_->rowsIndependent() && !jobs[k].preview && jobs[k].draft.empty()) {
      for (auto& b : batches) {
        const Job& first = jobs[b.front()];
        if (b.size() < B && !first.preview && first.draft.empty() && first.audio.size() == jobs[k].audio.size() && first.maxSteps == jobs[k].maxSteps &&
            first.beams == jobs[k].beams) {
          b.push_back(k);
          placed = true;
          break;
        }
      }
    }
    if (!placed) batches.push_back({k});
  }
  // A failed run (Ort::Exception is a std::exception) fails the windows of
  // its jobs only; nothing is thrown out of the round.
  for (auto& b : batches) {
    try {
      std::vector<const std::vector<float>*> rows;
      for (size_t k : b) rows.push_back(&jobs[k].audio);
      const std::vector<int64_t>* draft = b.size() == 1 && !jobs[b[0]].draft.empty() ? &jobs[b[0]].draft : nullptr;
      DecodeOptions o = settings_.decode;
      o.maxSteps = jobs[b.front()].maxSteps;
      o.beamWidth = jobs[b.front()].beams;
      const Model& model = jobs[b.front()].preview ? *preview_ : *model_;
      auto rs = model.transcribe(rows, o, draft);
      for (size_t i = 0; i < b.size(); i++) {
        jobs[b[i]].result = std::move(rs[i]);
        jobs[b[i]].ms = (jobs[b[i]].result.encodeMs + jobs[b[i]].result.decodeMs) / static_cast<double>(b.size());
      }
    } catch (const std::bad_alloc&) {
      for (size_t k : b) jobs[k].error = "out of memory (std::bad_alloc)";
    } catch (const std::exception& e) {
      for (size_t k : b) jobs[k].error = e.what();
    } catch (...) {
      for (size_t k : b) jobs[k].error = "unknown exception in the Moonshine model";
    }
  }
  for (auto& b : batches) {
    const Job& j = jobs[b.front()];
    if (j.error.empty()) learn(j.preview ? previewCost_ : cost_, j.result, j.audio.size(), b.size());
  }
  // A beam search's text is the final's only where its greedy decode (run
  // beside it) may be shown too: whether the audio is speech at all stays
  // the greedy decode's call, where the noise rule was measured. A beam
  // finds confident-looking text in noise ("2-3ตวบนลาง" at 0.73 where
  // greedy reads "So" at 0.18).
  for (Job& j : jobs) {
    if (j.done || !j.error.empty() || !j.result.greedy) continue;
    const Transcript& g = *j.result.greedy;
    if (!plausible(g.text, g.meanProb, settings_.minMeanProb, settings_.unfinishedMinProb) ||
        !plausible(j.result.text, j.result.meanProb, settings_.minMeanProb, settings_.unfinishedMinProb)) {
      std::shared_ptr<const Transcript> keep = j.result.greedy;
      j.result = *keep;
    }
  }

  // A decode of the open utterance as its partial.
  auto showPartial = [](Job& j, const std::string& text) {
    j.out->hasPartial = true;
    j.out->partial = text;
    j.out->partialStart = j.stream->uttStart;
    j.out->partialEnd = j.stream->uttStart + static_cast<int64_t>(j.span);
  };
  // The preview model's results last: the main model's text of the same
  // round wins.
  for (int pass = 0; pass < 2; pass++) {
    for (Job& j : jobs) {
      if (j.preview != (pass == 1)) continue;
      Stream& s = *j.stream;
      // A failed preview loses nothing (the main model decodes the same
      // audio); its text is only shown beside a main decode that succeeded.
      if (j.preview && (!j.error.empty() || j.out->error != ErrorCode::kNone)) continue;
      if (!j.error.empty()) {
        j.out->error = ErrorCode::kDecodeFailed;
        j.out->errorMessage = "Moonshine: " + j.error;
        continue;
      }
      const bool show = plausible(j.result.text, j.result.meanProb, settings_.minMeanProb, settings_.unfinishedMinProb);
      const std::string text = show ? j.result.text : std::string();
      if (j.kind == Job::kFinal) {
        Utterance& u = j.out->finals[j.finalIndex];
        u.text = text;
        if (text.empty()) continue;
        // Word times: the utterance's loud part (or all of it) shared out by
        // word length; Moonshine gives no timestamps. Confidence: the mean
        // probability of the utterance's tokens.
        const auto words = splitWords(text);
        const size_t a = std::min(j.wordsFrom, j.span), b = std::min(j.span, std::max(j.wordsTo, a + kFrame));
        size_t chars = 0;
        for (auto& w : words) chars += w.size() + 1;
        const double t0 = static_cast<double>(a) / kRate, t1 = static_cast<double>(b) / kRate;
        double t = t0;
        const float conf = static_cast<float>(std::min(1.0, std::max(0.0, j.result.meanProb)));
        for (auto& w : words) {
          const double d = (t1 - t0) * static_cast<double>(w.size() + 1) / static_cast<double>(std::max<size_t>(1, chars));
          Word wd;
          wd.text = w;
          wd.startFrame = static_cast<int32_t>(std::lround(t * 100));
          wd.endFrame = std::max(wd.startFrame, static_cast<int32_t>(std::lround((t + d) * 100)) - 1);
          wd.confidence = conf;
          u.words.push_back(std::move(wd));
          t += d;
        }
        continue;
      }
      if (j.preview) {
        // Only text, only beside a main decode of the same round that was
        // unsure the utterance is over (noise stays off the screen), and only
        // until it has text of its own: a preview never replaces the main
        // model's text. Once shown, it stays until then (see below). The
        // cadence is the main partial's (same round).
        if (!s.inUtt || s.shown || text.empty() || s.mainEosProb >= kPreviewMaxEosProb) continue;
        showPartial(j, text);
        s.previewShown = true;
        continue;
      }
      // A speculative final or a partial: the open utterance's hypothesis.
      if (j.kind == Job::kSpec) {
        s.specEnd = j.span;
        s.spec = j.result;
      }
      if (!s.inUtt) continue;
      // The longest decode so far is the best draft for the next one (kept
      // only where the model takes drafts, so the cost model can count on it).
      if (model_->takesDrafts() && j.span >= s.lastPartialLen) {
        s.hyp = j.result.tokens;
        if (!s.hyp.empty() && s.hyp.back() == Model::kEosToken) s.hyp.pop_back();
      }
      s.mainEosProb = j.result.firstEosProb;
      // An empty decode leaves the preview's text up until the main model
      // has its own: taking it down would make the caption flicker (base's
      // decode of clip 0 at 0.8 s is sure there is nothing yet, at 1.1 s it
      // has the words). The preview showed it only beside a decode unsure of that.
      if (!text.empty() || !s.previewShown || s.shown) showPartial(j, text);
      s.lastPartialLen = std::max(s.lastPartialLen, j.span);
      s.lastPartialAt = j.roundAt;
      s.lastPartialMs = j.result.encodeMs + j.result.decodeMs;
      s.shown = s.shown || !text.empty();
    }
  }
}

}  // namespace captiongate::moonshine
