// The PocketSphinx recognizer on the engine base, with the real Debian model
// and real speech (the LibriVox clips of pocketsphinx-testdata): more talkers
// than decoders, parking and ready, closing parked and reserved streams,
// shutdown mid-speech, faults on a stream that holds a decoder, fair
// decoders for continuous talkers, and the VAD's smoothing against
// sphinxbase's own.
#include <pocketsphinx.h>
#include <sphinxbase/err.h>
#include <sphinxbase/fe.h>

#include <cmath>
#include <dirent.h>

#include <algorithm>

#include "audio/vad.h"
#include "pocketsphinx/ps_recognizer.h"
#include "test_util.h"

namespace captiongate::test {
namespace {

class QuietPocketSphinx : public ::testing::Environment {
 public:
  void SetUp() override { err_set_logfp(nullptr); }
};
const auto* const kQuiet = ::testing::AddGlobalTestEnvironment(new QuietPocketSphinx);

PsSettings settings(int decoders, int threads) {
  PsSettings s;
  s.search.hmm = CAPTIONGATE_PS_MODEL "/en-us";
  s.search.lm = CAPTIONGATE_PS_MODEL "/en-us.lm.bin";
  s.search.dict = CAPTIONGATE_PS_MODEL "/cmudict-en-us.dict";
  s.decoders = decoders;
  s.threads = threads;
  s.vad.startSpeechFrames = 10;  // the gateway's defaults (config/default.json)
  s.vad.postSpeechFrames = 50;
  s.prerollSamples = 4800;
  return s;
}

const std::vector<std::vector<int16_t>>& clips() {
  static const std::vector<std::vector<int16_t>> all = [] {
    std::vector<std::string> files;
    if (DIR* d = opendir(CAPTIONGATE_PS_SPEECH)) {
      while (dirent* e = readdir(d)) {
        std::string n = e->d_name;
        if (n.size() > 4 && n.substr(n.size() - 4) == ".wav") files.push_back(std::string(CAPTIONGATE_PS_SPEECH) + "/" + n);
      }
      closedir(d);
    }
    std::sort(files.begin(), files.end());
    std::vector<std::vector<int16_t>> v;
    for (auto& f : files) v.push_back(readWav(f));
    return v;
  }();
  return all;
}

struct Transcript {
  std::vector<Utterance> finals;
  int parks = 0;
  double waitMs = 0;
  std::string text() const {
    std::string t;
    for (auto& u : finals)
      if (!u.text.empty()) t += (t.empty() ? "" : " ") + u.text;
    return t;
  }
};

// The stream loop of src/engine: windows in order, the rest resubmitted
// after a park once the stream is named ready, flush at the end.
Transcript transcribe(Harness& h, const std::vector<int16_t>& pcm, size_t win = 1600, const StreamOptions& options = {}) {
  Transcript t;
  const uint32_t id = h.engine().openStream(options);
  size_t pos = 0;
  for (;;) {
    const size_t end = std::min(pcm.size(), pos + win);
    const bool flush = end == pcm.size();
    WindowIn w;
    w.stream = id;
    w.start = static_cast<int64_t>(pos);
    w.pcm.assign(pcm.begin() + static_cast<std::ptrdiff_t>(pos), pcm.begin() + static_cast<std::ptrdiff_t>(end));
    w.flush = flush;
    auto out = h.run({std::move(w)});
    if (out.empty()) break;
    const WindowOut& r = out[0];
    EXPECT_EQ(r.error, ErrorCode::kNone) << r.errorMessage;
    if (r.error != ErrorCode::kNone) break;
    for (auto& u : r.finals) t.finals.push_back(u);
    t.waitMs += r.decoderWaitMs;
    pos += r.consumed;
    if (r.waiting) {
      ++t.parks;
      EXPECT_TRUE(h.waitReady(id));
      continue;
    }
    if (flush && r.flushed) break;
  }
  h.engine().closeStream(id);
  return t;
}

void expectSame(const Transcript& a, const Transcript& b) {
  ASSERT_EQ(a.finals.size(), b.finals.size());
  for (size_t i = 0; i < a.finals.size(); ++i) {
    const Utterance& x = a.finals[i];
    const Utterance& y = b.finals[i];
    EXPECT_EQ(x.text, y.text);
    EXPECT_EQ(x.startSample, y.startSample);
    EXPECT_EQ(x.endSample, y.endSample);
    ASSERT_EQ(x.words.size(), y.words.size());
    for (size_t k = 0; k < x.words.size(); ++k) {
      EXPECT_EQ(x.words[k].startFrame, y.words[k].startFrame);
      EXPECT_EQ(x.words[k].endFrame, y.words[k].endFrame);
      // PTM top-N history of a pooled decoder (docs/native.md).
      EXPECT_NEAR(x.words[k].confidence, y.words[k].confidence, 0.02);
    }
  }
}

void waitIdle(EngineBase& e) {
  for (int i = 0; i < 400; ++i) {
    const EngineStats s = e.stats();
    if (s.decodersInUse == 0 && s.streamsWaiting == 0 && s.streams == 0) return;
    std::this_thread::sleep_for(5ms);
  }
}

TEST(PocketSphinx, MoreTalkersThanDecodersFromManyThreadsMatchSequential) {
  ASSERT_GE(clips().size(), 5u) << "pocketsphinx-testdata is not installed";
  Harness h(std::make_unique<PsRecognizer>(settings(2, 2)));
  h.engine().load();
  std::vector<Transcript> sequential;
  for (auto& c : clips()) sequential.push_back(transcribe(h, c));
  std::vector<Transcript> parallel(clips().size());
  std::vector<std::thread> talkers;
  for (size_t i = 0; i < clips().size(); ++i)
    talkers.emplace_back([&, i] { parallel[i] = transcribe(h, clips()[i]); });
  for (auto& t : talkers) t.join();
  int parks = 0;
  double waited = 0;
  for (size_t i = 0; i < clips().size(); ++i) {
    SCOPED_TRACE("clip " + std::to_string(i));
    expectSame(parallel[i], sequential[i]);
    parks += parallel[i].parks;
    waited += parallel[i].waitMs;
  }
  EXPECT_FALSE(sequential[1].text().empty());
  EXPECT_NE(sequential[1].text().find("young man"), std::string::npos) << sequential[1].text();
  // Word confidences come from lattice posteriors (not all 1.0).
  std::set<int> confidences;
  for (auto& u : sequential[0].finals)
    for (auto& w : u.words) confidences.insert(static_cast<int>(std::lround(w.confidence * 100)));
  EXPECT_GT(confidences.size(), 3u);
  EXPECT_GT(parks, 0) << "five talkers on two decoders had to park";
  EXPECT_GT(waited, 0);
  waitIdle(h.engine());
  const EngineStats s = h.engine().stats();
  EXPECT_EQ(s.decoders, 2);
  EXPECT_EQ(s.decodersInUse, 0);
  EXPECT_EQ(s.streamsWaiting, 0);
  EXPECT_EQ(s.streams, 0);
  EXPECT_GT(s.decoderWaits, 0u);
}

// Feeds 100 ms windows of speech until the stream holds a decoder (a partial)
// or parks; returns the position reached.
size_t speakUntil(Harness& h, uint32_t id, const std::vector<int16_t>& pcm, bool wantPark) {
  size_t pos = 0;
  while (pos + 1600 <= pcm.size()) {
    WindowIn w;
    w.stream = id;
    w.start = static_cast<int64_t>(pos);
    w.pcm.assign(pcm.begin() + static_cast<std::ptrdiff_t>(pos), pcm.begin() + static_cast<std::ptrdiff_t>(pos + 1600));
    auto r = h.run({std::move(w)})[0];
    EXPECT_EQ(r.error, ErrorCode::kNone) << r.errorMessage;
    pos += r.consumed;
    if (wantPark && r.waiting) return pos;
    if (!wantPark && r.hasPartial) return pos;
  }
  ADD_FAILURE() << "the stream never " << (wantPark ? "parked" : "started an utterance");
  return pos;
}

TEST(PocketSphinx, ClosingParkedAndReservedStreamsPassesTheDecoderOn) {
  Harness h(std::make_unique<PsRecognizer>(settings(1, 2)));
  h.engine().load();
  const auto& speech = clips()[0];
  const uint32_t a = h.engine().openStream();
  const uint32_t b = h.engine().openStream();
  const uint32_t c = h.engine().openStream();
  const uint32_t d = h.engine().openStream();
  const size_t aPos = speakUntil(h, a, speech, false);  // a holds the one decoder
  speakUntil(h, b, speech, true);                       // b, c, d park in that order
  const size_t cPos = speakUntil(h, c, speech, true);
  speakUntil(h, d, speech, true);
  EXPECT_EQ(h.engine().stats().streamsWaiting, 3);
  h.engine().closeStream(b);  // parked: leaves the queue
  // a ends its utterance (flush): the decoder is reserved for c, not b.
  WindowIn w = window(a, static_cast<int64_t>(aPos), 160, true);
  auto r = h.run({std::move(w)})[0];
  EXPECT_TRUE(r.flushed);
  EXPECT_EQ(r.finals.size(), 1u);
  EXPECT_TRUE(h.waitReady(c));
  EXPECT_FALSE(h.waitReady(b, 50ms));
  // c closes without taking its reservation: it passes on to d.
  h.engine().closeStream(c);
  EXPECT_TRUE(h.waitReady(d));
  (void)cPos;
  h.engine().closeStream(a);
  h.engine().closeStream(d);
  waitIdle(h.engine());
  const EngineStats s = h.engine().stats();
  EXPECT_EQ(s.decodersInUse, 0);
  EXPECT_EQ(s.streamsWaiting, 0);
  EXPECT_EQ(s.streams, 0);
}

TEST(PocketSphinx, ShutdownMidSpeechTwiceConcurrentlyReleasesEverything) {
  Harness h(std::make_unique<PsRecognizer>(settings(2, 2)));
  h.engine().load();
  std::vector<uint32_t> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(h.engine().openStream());
  // Pipelined windows of speech: a stream that parks fails its later
  // windows (kBadWindow), which is the contract; everything must settle.
  std::vector<uint64_t> batches;
  size_t shortest = SIZE_MAX;
  for (size_t i = 0; i < ids.size(); ++i) shortest = std::min(shortest, clips()[i].size());
  for (size_t pos = 0; pos + 1600 <= std::min<size_t>(shortest, 48000); pos += 1600) {
    std::vector<WindowIn> ws;
    for (size_t i = 0; i < ids.size(); ++i) {
      const auto& pcm = clips()[i];
      WindowIn w;
      w.stream = ids[i];
      w.start = static_cast<int64_t>(pos);
      w.pcm.assign(pcm.begin() + static_cast<std::ptrdiff_t>(pos), pcm.begin() + static_cast<std::ptrdiff_t>(pos + 1600));
      ws.push_back(std::move(w));
    }
    batches.push_back(h.submit(std::move(ws)));
  }
  std::this_thread::sleep_for(30ms);
  std::thread other([&] { h.engine().shutdown(); });
  h.engine().shutdown();
  other.join();
  int shut = 0;
  for (uint64_t id : batches) {
    auto b = h.wait(id, 10s);
    ASSERT_TRUE(b);
    for (auto& o : b->out) {
      EXPECT_TRUE(o.error == ErrorCode::kNone || o.error == ErrorCode::kShutdown || o.error == ErrorCode::kBadWindow)
          << o.errorMessage;
      shut += o.error == ErrorCode::kShutdown;
    }
  }
  EXPECT_GT(shut, 0);
  const EngineStats s = h.engine().stats();
  EXPECT_EQ(s.decodersInUse, 0);
  EXPECT_EQ(s.streamsWaiting, 0);
  EXPECT_EQ(s.streams, 0);
  EXPECT_EQ(s.decoders, 0) << "the decoders are freed at shutdown, not when the engine object goes";
}

TEST(PocketSphinx, FaultOnAStreamHoldingADecoderReleasesItOnClose) {
  for (auto fault : {EngineBase::Fault::kThrow, EngineBase::Fault::kBadAlloc, EngineBase::Fault::kFail}) {
    Harness h(std::make_unique<PsRecognizer>(settings(1, 1)));
    h.engine().load();
    const uint32_t a = h.engine().openStream();
    const size_t pos = speakUntil(h, a, clips()[0], false);
    EXPECT_EQ(h.engine().stats().decodersInUse, 1);
    ASSERT_TRUE(h.engine().injectFault(a, fault));
    auto r = h.run({window(a, static_cast<int64_t>(pos), 1600)})[0];
    EXPECT_EQ(r.error, ErrorCode::kDecodeFailed);
    EXPECT_EQ(h.run({window(a, static_cast<int64_t>(pos), 1600)})[0].error, ErrorCode::kDecodeFailed);
    h.engine().closeStream(a);
    waitIdle(h.engine());
    EXPECT_EQ(h.engine().stats().decodersInUse, 0);
    // The decoder serves the next stream normally.
    Transcript t = transcribe(h, clips()[1]);
    EXPECT_NE(t.text().find("young man"), std::string::npos) << t.text();
  }
}

TEST(PocketSphinx, BadWindowAndBadModel) {
  Harness h(std::make_unique<PsRecognizer>(settings(1, 1)));
  h.engine().load();
  const uint32_t a = h.engine().openStream();
  EXPECT_EQ(h.run({window(a, 5, 160)})[0].error, ErrorCode::kBadWindow);
  PsSettings bad = settings(1, 1);
  bad.search.hmm = "/nonexistent/model";
  Harness broken(std::make_unique<PsRecognizer>(bad));
  EXPECT_THROW(broken.engine().load(), std::runtime_error);
  EXPECT_THROW(broken.engine().openStream(), std::runtime_error);
}

// ------------------------------------------------------------ fair decoders

// The clips back to back, starting at clip `first`: LibriVox reading with
// only short pauses, which the VAD cuts into utterances of 3 to 15 s.
std::vector<int16_t> continuousSpeech(size_t first) {
  std::vector<int16_t> v;
  for (size_t k = 0; k < clips().size(); ++k) {
    const auto& c = clips()[(first + k) % clips().size()];
    v.insert(v.end(), c.begin(), c.end());
  }
  return v;
}

struct Talker {
  uint32_t id = 0;
  std::vector<int16_t> pcm;
  size_t consumed = 0;
  bool parked = false;
  bool done = false;
  int64_t parkedAt = 0;           // tick it parked at
  int64_t longestWait = 0;        // ticks, parked until named ready
  std::vector<int64_t> finalTicks;  // tick each non-empty final came at
  std::vector<Utterance> finals;
};

struct TalkResult {
  std::vector<Talker> talkers;
  uint64_t handovers = 0;
  uint64_t samplesDecoded = 0;
};

// Virtual real time: every tick, kTick more samples of each talker have
// "arrived"; a talker that is not parked submits all it has not yet had
// consumed (its backlog included) as one window, flushing at the end. A
// parked talker waits until the engine names it ready. Decoding is treated
// as instant, so waits are measured in audio (ticks), the same under TSan.
constexpr size_t kTick = 1600;  // 100 ms

TalkResult talkTogether(int decoders, int holdSamples, const std::vector<std::vector<int16_t>>& speech) {
  PsSettings st = settings(decoders, 2);
  st.holdSamples = holdSamples;
  auto rec = std::make_unique<PsRecognizer>(st);
  PsRecognizer* ps = rec.get();
  Harness h(std::move(rec));
  h.engine().load();
  TalkResult res;
  for (auto& pcm : speech) {
    Talker t;
    t.id = h.engine().openStream();
    t.pcm = pcm;
    res.talkers.push_back(std::move(t));
  }
  for (int64_t tick = 1;; ++tick) {
    bool all = true;
    std::vector<Talker*> sent;
    std::vector<uint64_t> batches;
    for (auto& t : res.talkers) {
      if (t.done) continue;
      all = false;
      if (t.parked) {
        if (!h.waitReady(t.id, 0ms)) continue;
        t.parked = false;
        t.longestWait = std::max(t.longestWait, tick - t.parkedAt);
      }
      const size_t arrived = std::min(t.pcm.size(), static_cast<size_t>(tick) * kTick);
      const bool flush = arrived == t.pcm.size();
      if (arrived == t.consumed && !flush) continue;
      WindowIn w;
      w.stream = t.id;
      w.start = static_cast<int64_t>(t.consumed);
      w.pcm.assign(t.pcm.begin() + static_cast<std::ptrdiff_t>(t.consumed), t.pcm.begin() + static_cast<std::ptrdiff_t>(arrived));
      w.flush = flush;
      std::vector<WindowIn> one;
      one.push_back(std::move(w));
      batches.push_back(h.submit(std::move(one)));  // one batch per talker: they decode in parallel
      sent.push_back(&t);
    }
    if (all) break;
    for (size_t k = 0; k < sent.size(); ++k) {
      Talker& t = *sent[k];
      auto b = h.wait(batches[k]);
      if (!b) return res;
      const WindowOut& r = b->out[0];
      EXPECT_EQ(r.error, ErrorCode::kNone) << r.errorMessage;
      if (r.error != ErrorCode::kNone) return res;
      t.consumed += r.consumed;
      for (auto& u : r.finals) {
        if (!u.text.empty()) t.finalTicks.push_back(tick);
        t.finals.push_back(u);
      }
      if (r.waiting) {
        t.parked = true;
        t.parkedAt = tick;
      } else if (r.flushed) {
        t.done = true;
      }
    }
    if (tick > 100000) {
      ADD_FAILURE() << "talkers never finished";
      break;
    }
  }
  for (auto& t : res.talkers) h.engine().closeStream(t.id);
  waitIdle(h.engine());
  res.handovers = ps->handovers();
  res.samplesDecoded = h.engine().stats().samplesDecoded;
  return res;
}

// Longest stretch, in ticks, a talker went without a non-empty final while
// its audio was still arriving (from its first sample).
int64_t longestSilence(const Talker& t) {
  const int64_t talkTicks = static_cast<int64_t>((t.pcm.size() + kTick - 1) / kTick);
  int64_t last = 0, gap = 0;
  for (int64_t at : t.finalTicks) {
    if (at > talkTicks) break;
    gap = std::max(gap, at - last);
    last = at;
  }
  return std::max(gap, talkTicks - last);
}

TEST(PocketSphinx, FairDecodersThreeContinuousTalkersOnOneDecoder) {
  ASSERT_GE(clips().size(), 5u) << "pocketsphinx-testdata is not installed";
  const std::vector<std::vector<int16_t>> speech = {continuousSpeech(0), continuousSpeech(1), continuousSpeech(3)};
  constexpr int kHold = 3 * 16000;  // 3 s
  const TalkResult fair = talkTogether(1, kHold, speech);
  const TalkResult today = talkTogether(1, 0, speech);

  uint64_t inUtterances = 0;
  for (size_t i = 0; i < speech.size(); ++i) {
    SCOPED_TRACE("talker " + std::to_string(i));
    const Talker& t = fair.talkers[i];
    // Every sample taken exactly once, and the finals tile the stream: none
    // overlaps the one before (no sample decoded twice).
    EXPECT_EQ(t.consumed, speech[i].size());
    ASSERT_FALSE(t.finals.empty());
    for (size_t k = 1; k < t.finals.size(); ++k) EXPECT_GE(t.finals[k].startSample, t.finals[k - 1].endSample);
    for (auto& u : t.finals) inUtterances += static_cast<uint64_t>(u.endSample - u.startSample);
    // Finals while talking: the first within a few seconds, then no long
    // silence. One decoder, three talkers, a 3 s hold (+0.3 s search): a
    // talker waits at most for the two ahead of it, so about 7 s.
    EXPECT_LE(t.longestWait, 75) << "ticks parked";
    EXPECT_LE(longestSilence(t), 110) << "ticks without a final";
    EXPECT_GE(t.finalTicks.size(), 6u);
    std::printf("  fair talker %zu: %zu finals, longest wait %.1f s, longest without a final %.1f s"
                " (today: %.1f s, %.1f s)\n",
                i, t.finals.size(), t.longestWait / 10.0, longestSilence(t) / 10.0,
                today.talkers[i].longestWait / 10.0, longestSilence(today.talkers[i]) / 10.0);
  }
  EXPECT_GT(fair.handovers, 5u);
  // Nothing decoded twice or skipped: what reached the model is exactly the
  // audio inside utterances (pre-roll is taken from before an onset only).
  EXPECT_EQ(fair.samplesDecoded, inUtterances);
  // Today's rule: the talker at the back waits for whole utterances (up to
  // 15 s in this reading).
  int64_t todayWorst = 0;
  for (auto& t : today.talkers) todayWorst = std::max(todayWorst, t.longestWait);
  EXPECT_GT(todayWorst, 100) << "ticks: the comparison needs talkers that starve without hand-over";
  EXPECT_EQ(today.handovers, 0u);
}

TEST(PocketSphinx, FairDecodersChangeNothingForALoneTalker) {
  const std::vector<int16_t> speech = continuousSpeech(0);
  const TalkResult today = talkTogether(1, 0, {speech});
  const TalkResult fair = talkTogether(1, 16000, {speech});
  EXPECT_EQ(fair.handovers, 0u);
  Transcript a, b;
  a.finals = today.talkers[0].finals;
  b.finals = fair.talkers[0].finals;
  expectSame(b, a);
  for (size_t k = 0; k < a.finals.size() && k < b.finals.size(); ++k)
    for (size_t w = 0; w < a.finals[k].words.size() && w < b.finals[k].words.size(); ++w)
      EXPECT_EQ(a.finals[k].words[w].confidence, b.finals[k].words[w].confidence);  // fresh decoders: bit for bit
  EXPECT_GE(a.finals.size(), 3u);
}

// The VAD computes sphinxbase's hangover itself on the front end's raw
// decisions; it must agree with a front end that smooths on its own (the
// configuration the VAD had before), after every chunk, on speech, silence
// and noise, in 10 ms steps and in odd chunk sizes.
// Per-stream endpoint silence: two clips with a 0.6 s pause between them are
// one utterance for a stream whose endpoint is 1.5 s, two or more for one
// whose endpoint is 0.2 s, and one final (at the flush) with no endpoint.
TEST(PocketSphinx, PerStreamEndpointSilence) {
  Harness h(std::make_unique<PsRecognizer>(settings(2, 2)));
  h.engine().load();
  const auto& c = clips();
  ASSERT_GE(c.size(), 2u);
  std::vector<int16_t> pcm(c[0]);
  const int64_t gapStart = static_cast<int64_t>(pcm.size());
  pcm.resize(pcm.size() + 9600, 0);
  const int64_t gapEnd = static_cast<int64_t>(pcm.size());
  pcm.insert(pcm.end(), c[1].begin(), c[1].end());
  auto splitsInGap = [&](const Transcript& t) {
    for (size_t i = 0; i + 1 < t.finals.size(); ++i)
      if (t.finals[i].endSample <= gapEnd && t.finals[i + 1].startSample >= gapStart) return true;
    return false;
  };
  auto spans = [&](const Transcript& t) {
    for (auto& u : t.finals)
      if (u.startSample < gapStart && u.endSample > gapEnd) return true;
    return false;
  };
  StreamOptions longer;
  longer.endpointFrames = 150;
  StreamOptions shorter;
  shorter.endpointFrames = 20;
  StreamOptions never;
  never.endpointFrames = StreamOptions::kNoEndpoint;
  const Transcript merged = transcribe(h, pcm, 1600, longer);
  const Transcript split = transcribe(h, pcm, 1600, shorter);
  const Transcript one = transcribe(h, pcm, 1600, never);
  EXPECT_TRUE(spans(merged)) << merged.text();
  EXPECT_FALSE(splitsInGap(merged));
  EXPECT_TRUE(splitsInGap(split)) << split.text();
  EXPECT_GT(split.finals.size(), merged.finals.size());
  EXPECT_EQ(one.finals.size(), 1u);
  EXPECT_THROW(h.engine().openStream(StreamOptions{-2}), std::invalid_argument);
}

TEST(Vad, SmoothingMatchesSphinxbase) {
  std::vector<int16_t> audio = continuousSpeech(0);
  audio.insert(audio.end(), 16000 * 2, 0);
  uint32_t seed = 12345;
  for (int i = 0; i < 16000 * 3; ++i) {
    seed = seed * 1664525u + 1013904223u;
    audio.push_back(static_cast<int16_t>(static_cast<int32_t>(seed >> 16) % 400 - 200));
  }
  const auto& c = clips()[1];
  for (size_t i = 0; i < c.size(); ++i) audio.push_back(static_cast<int16_t>(c[i] / 4));
  for (size_t chunk : {size_t{160}, size_t{37}, size_t{1000}}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    VadSettings vs;
    vs.startSpeechFrames = 10;
    vs.postSpeechFrames = 50;
    Vad vad;
    std::string err;
    ASSERT_TRUE(vad.init(vs, &err)) << err;
    cmd_ln_t* cfg = cmd_ln_init(nullptr, fe_get_args(), FALSE, "-samprate", "16000", "-lowerf", "130", "-upperf", "6800",
                                "-nfilt", "25", "-transform", "dct", "-lifter", "22", "-remove_silence", "yes",
                                "-remove_noise", "yes", "-vad_threshold", std::to_string(vs.threshold).c_str(),
                                "-vad_startspeech", "10", "-vad_postspeech", "50", "-vad_prespeech", "20", nullptr);
    ASSERT_NE(cfg, nullptr);
    fe_t* ref = fe_init_auto_r(cfg);
    cmd_ln_free_r(cfg);
    ASSERT_NE(ref, nullptr);
    fe_start_stream(ref);
    fe_start_utt(ref);
    std::vector<float> cep(128 * 13);
    std::vector<float*> rows(128);
    for (int i = 0; i < 128; ++i) rows[i] = cep.data() + i * 13;
    int changes = 0, rawChanges = 0, mismatches = 0;
    bool last = false, lastRaw = false;
    for (size_t pos = 0; pos < audio.size(); pos += chunk) {
      const size_t n = std::min(chunk, audio.size() - pos);
      const int16* p = audio.data() + pos;
      size_t left = n;
      while (left > 0) {
        int32 nf = 128;
        fe_process_frames(ref, &p, &left, rows.data(), &nf, nullptr);
        if (nf == 0 && left > 0) break;
      }
      const bool mine = vad.process(audio.data() + pos, n);
      mismatches += mine != (fe_get_vad_state(ref) != 0);
      changes += mine != last;
      rawChanges += vad.frameSpeech() != lastRaw;
      last = mine;
      lastRaw = vad.frameSpeech();
    }
    fe_free(ref);
    EXPECT_EQ(mismatches, 0);
    EXPECT_GE(changes, 4);
    if (chunk == 160) {
      EXPECT_GT(rawChanges, 4 * changes) << "the raw decision sees the pauses between words";
    }
  }
}

}  // namespace
}  // namespace captiongate::test
