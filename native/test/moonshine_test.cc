// The Moonshine recognizer on the engine base, with the real tiny and base
// models on ONNX Runtime (onnxruntime-node's library, dlopen()ed) and real
// speech: several talkers from several threads on two workers give the
// finals of sequential decoding (base with drafts and tiny's first partials);
// tiny's text shows before base has its own; base's drafts give the
// greedy tokens from two threads; shutdown mid-speech from two threads; a
// fault fails its stream only; a missing model is a clear error. Skipped
// when a model or the library is not installed (scripts/setup.sh).
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "moonshine/moonshine_recognizer.h"
#include "test_util.h"

namespace captiongate::test {
namespace {

using moonshine::MoonshineRecognizer;
using moonshine::MoonshineSettings;

bool installed() {
  return access(CAPTIONGATE_MOONSHINE_TINY "/encoder_model.ort", R_OK) == 0 && access(CAPTIONGATE_ORT_LIBRARY, R_OK) == 0;
}

MoonshineSettings settings(int threads, const std::string& dir = CAPTIONGATE_MOONSHINE_TINY) {
  MoonshineSettings s;
  s.model.dir = dir;
  s.model.ortLibrary = CAPTIONGATE_ORT_LIBRARY;
  s.threads = threads;
  s.vad.startSpeechFrames = 10;  // the gateway's defaults (config/default.json)
  s.vad.postSpeechFrames = 50;
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

// Half a second of silence around the clip, so the VAD opens and ends the utterance.
std::vector<int16_t> padded(const std::vector<int16_t>& c) {
  std::vector<int16_t> p(8000, 0);
  p.insert(p.end(), c.begin(), c.end());
  p.insert(p.end(), 8000, 0);
  return p;
}

struct Partial {
  std::string text;
  int64_t end = 0;  // stream position the partial's audio ends at
};

std::vector<Utterance> transcribe(Harness& h, const std::vector<int16_t>& pcm, size_t win = 1600, std::vector<Partial>* partials = nullptr) {
  std::vector<Utterance> finals;
  const uint32_t id = h.engine().openStream();
  for (size_t pos = 0; pos < pcm.size();) {
    const size_t end = std::min(pcm.size(), pos + win);
    WindowIn w;
    w.stream = id;
    w.start = static_cast<int64_t>(pos);
    w.pcm.assign(pcm.begin() + static_cast<std::ptrdiff_t>(pos), pcm.begin() + static_cast<std::ptrdiff_t>(end));
    w.flush = end == pcm.size();
    auto out = h.run({std::move(w)});
    if (out.empty()) break;
    EXPECT_EQ(out[0].error, ErrorCode::kNone) << out[0].errorMessage;
    EXPECT_FALSE(out[0].waiting);
    for (auto& u : out[0].finals) finals.push_back(u);
    if (partials && out[0].hasPartial) partials->push_back({out[0].partial, out[0].partialEnd});
    pos += out[0].consumed;
  }
  h.engine().closeStream(id);
  return finals;
}

void waitIdle(EngineBase& e) {
  for (int i = 0; i < 400; ++i) {
    const EngineStats s = e.stats();
    if (s.decodersInUse == 0 && s.streams == 0) return;
    std::this_thread::sleep_for(5ms);
  }
}

// Talkers from as many threads on two workers get the finals of sequential
// decoding: text and times bit for bit, confidences to `confTolerance`.
void expectTalkersGetSequentialFinals(const std::string& dir, float confTolerance) {
  ASSERT_GE(clips().size(), 5u) << "pocketsphinx-testdata is not installed";
  MoonshineSettings st = settings(2, dir);
  // The gateway's defaults (engine.moonshine.finalBeamWidth 0: tiny's finals
  // are beam searches of 4, base's greedy, with drafts).
  st.finalBeamWidth = dir == CAPTIONGATE_MOONSHINE_TINY ? 2 : 1;
  if (dir != CAPTIONGATE_MOONSHINE_TINY) {  // base, as the engine loads it: weights folded, tiny's first partials
    st.model.foldWeights = true;
    st.preview = st.model;
    st.preview.dir = CAPTIONGATE_MOONSHINE_TINY;
    st.preview.foldWeights = false;
  }
  Harness h(std::make_unique<MoonshineRecognizer>(st));
  h.engine().load();
  std::vector<std::vector<Utterance>> sequential;
  for (auto& c : clips()) sequential.push_back(transcribe(h, padded(c)));
  std::vector<std::vector<Utterance>> parallel(clips().size());
  std::vector<std::thread> talkers;
  for (size_t i = 0; i < clips().size(); ++i) talkers.emplace_back([&, i] { parallel[i] = transcribe(h, padded(clips()[i])); });
  for (auto& t : talkers) t.join();
  for (size_t i = 0; i < clips().size(); ++i) {
    SCOPED_TRACE("clip " + std::to_string(i));
    ASSERT_EQ(parallel[i].size(), sequential[i].size());
    for (size_t k = 0; k < parallel[i].size(); ++k) {
      EXPECT_EQ(parallel[i][k].text, sequential[i][k].text);
      EXPECT_EQ(parallel[i][k].startSample, sequential[i][k].startSample);
      EXPECT_EQ(parallel[i][k].endSample, sequential[i][k].endSample);
      ASSERT_EQ(parallel[i][k].words.size(), sequential[i][k].words.size());
      for (size_t w = 0; w < parallel[i][k].words.size(); ++w)
        EXPECT_NEAR(parallel[i][k].words[w].confidence, sequential[i][k].words[w].confidence, confTolerance);
    }
  }
  std::string text;
  for (auto& u : sequential[1]) text += u.text;
  EXPECT_NE(text.find("young man"), std::string::npos) << text;
  waitIdle(h.engine());
  EXPECT_EQ(h.engine().stats().decodersInUse, 0);
  EXPECT_EQ(h.engine().stats().streams, 0);
}

TEST(Moonshine, TalkersFromManyThreadsOnTwoWorkersGetTheFinalsOfSequentialDecoding) {
  if (!installed()) GTEST_SKIP() << "Moonshine tiny or the ONNX Runtime library is not installed";
  expectTalkersGetSequentialFinals(CAPTIONGATE_MOONSHINE_TINY, 0);
}

bool baseInstalled() { return installed() && access(CAPTIONGATE_MOONSHINE_BASE "/encoder_model.ort", R_OK) == 0; }

// Base as the engine loads it (weights folded).
moonshine::ModelSettings baseModelSettings() {
  moonshine::ModelSettings ms;
  ms.dir = CAPTIONGATE_MOONSHINE_BASE;
  ms.ortLibrary = CAPTIONGATE_ORT_LIBRARY;
  ms.foldWeights = true;
  return ms;
}

std::vector<float> clipAsFloat(size_t c) {
  std::vector<float> clip(clips()[c].size());
  for (size_t i = 0; i < clip.size(); ++i) clip[i] = clips()[c][i] / 32768.0f;
  return clip;
}

// Base decodes with drafts (the stream's latest tokens): the same finals,
// confidences to float rounding (a draft's positions run in one pass).
TEST(Moonshine, BaseTalkersWithDraftsGetTheFinalsOfSequentialDecoding) {
  if (!baseInstalled()) GTEST_SKIP() << "Moonshine base or the ONNX Runtime library is not installed";
  expectTalkersGetSequentialFinals(CAPTIONGATE_MOONSHINE_BASE, 1e-5f);
}

// Base as the engine loads it, with or without tiny's first partials, and a
// partial every window (no cadence, no load share), so runs are comparable.
MoonshineSettings everyWindowBase(bool preview) {
  MoonshineSettings st = settings(2, CAPTIONGATE_MOONSHINE_BASE);
  st.model.foldWeights = true;
  if (preview) st.preview = settings(2).model;  // tiny
  st.partialIntervalMs = 10;
  st.partialLoadShare = 1;
  st.roundMs = 100000;
  return st;
}

// Base with tiny as its preview: a partial every window (no cadence, no load
// share), so the runs are comparable. Tiny's text comes first where base has
// none yet (clip 0920: base decodes to nothing until 0.7 s of speech), and
// the finals are base's alone.
TEST(Moonshine, BaseShowsTinysTextUntilItHasItsOwnAndKeepsItsFinals) {
  if (!baseInstalled()) GTEST_SKIP() << "Moonshine base or the ONNX Runtime library is not installed";
  ASSERT_GE(clips().size(), 5u) << "pocketsphinx-testdata is not installed";
  auto run = [](bool preview, size_t clip, std::vector<Partial>* partials) {
    Harness h(std::make_unique<MoonshineRecognizer>(everyWindowBase(preview)));
    h.engine().load();
    return transcribe(h, padded(clips()[clip]), 1600, partials);
  };
  auto firstText = [](const std::vector<Partial>& ps) {
    for (auto& p : ps)
      if (!p.text.empty()) return p.end;
    return int64_t{-1};
  };
  int sooner = 0;
  for (size_t c = 0; c < clips().size(); ++c) {
    SCOPED_TRACE("clip " + std::to_string(c));
    std::vector<Partial> alone, withPreview;
    const auto a = run(false, c, &alone);
    const auto b = run(true, c, &withPreview);
    ASSERT_EQ(a.size(), b.size());
    for (size_t k = 0; k < a.size(); ++k) {
      EXPECT_EQ(a[k].text, b[k].text);
      EXPECT_EQ(a[k].startSample, b[k].startSample);
      EXPECT_EQ(a[k].endSample, b[k].endSample);
    }
    const int64_t baseFirst = firstText(alone), previewFirst = firstText(withPreview);
    ASSERT_GT(baseFirst, 0);
    ASSERT_GT(previewFirst, 0);
    EXPECT_LE(previewFirst, baseFirst);
    // The partials before base's first text are tiny's, and none of them is
    // cleared by an empty decode of base's.
    bool shown = false;
    for (auto& p : withPreview) {
      if (p.end >= baseFirst) break;
      if (shown) {
        EXPECT_FALSE(p.text.empty()) << "an empty partial at " << p.end;
      }
      shown = shown || !p.text.empty();
    }
    if (previewFirst + 4800 <= baseFirst) sooner++;
    std::printf("clip %zu: first text %.2f s with tiny's preview, %.2f s from base alone\n", c, previewFirst / 16000.0, baseFirst / 16000.0);
  }
  EXPECT_GE(sooner, 2) << "tiny's text came 300 ms sooner on fewer than two clips";
}

// Noise bursts (the streaming test's, in JS): tiny alone reads some of their
// prefixes as words it is sure of ("Don't" at 0.69), base never does, and
// while base's own decodes are sure there is nothing to read, tiny's text
// is not shown. A partial every window, so every prefix a window ends is decoded.
TEST(Moonshine, BaseShowsNoneOfTinysTextOnNoise) {
  if (!baseInstalled()) GTEST_SKIP() << "Moonshine base or the ONNX Runtime library is not installed";
  std::vector<int16_t> noise(20 * 16000);
  uint32_t seed = 42;
  for (size_t i = 0; i < noise.size(); ++i) {
    seed = (seed * 1103515245u + 12345u) & 0x7fffffffu;
    const double on = i % 40000 < 24000 ? 1 : 0.02;
    noise[i] = static_cast<int16_t>(std::lround(on * ((seed / 2147483647.0 * 2 - 1) * 8000 + 1500 * std::sin(2 * M_PI * 50 * static_cast<double>(i) / 16000))));
  }
  Harness h(std::make_unique<MoonshineRecognizer>(everyWindowBase(true)));
  h.engine().load();
  std::vector<Partial> partials;
  const auto finals = transcribe(h, noise, 1600, &partials);
  EXPECT_GT(partials.size(), 40u) << "the bursts were not decoded";
  for (auto& p : partials) EXPECT_EQ(p.text, "") << "at " << p.end / 16000.0 << " s";
  for (auto& u : finals) EXPECT_EQ(u.text, "");
}

// The model on its own, from two threads at once: prefixes of each clip every
// second, each with the last one's tokens as its draft, give the tokens of
// the decode without one; a wrong draft too.
TEST(Moonshine, BaseDraftsGiveTheGreedyTokensFromTwoThreads) {
  if (!baseInstalled()) GTEST_SKIP() << "Moonshine base or the ONNX Runtime library is not installed";
  ASSERT_GE(clips().size(), 5u) << "pocketsphinx-testdata is not installed";
  const moonshine::Model model(baseModelSettings());
  ASSERT_TRUE(model.rowsIndependent());
  const moonshine::DecodeOptions o;
  std::atomic<int> plainSteps{0}, draftSteps{0};
  auto run = [&](size_t first) {
    for (size_t c = first; c < clips().size(); c += 2) {
      const std::vector<float> clip = clipAsFloat(c);
      std::vector<int64_t> prev;
      for (size_t end = 16000;; end = std::min(end + 16000, clip.size())) {
        const std::vector<float> row(clip.begin(), clip.begin() + static_cast<std::ptrdiff_t>(end));
        const auto plain = model.transcribe(row, o);
        const auto drafted = model.transcribe(row, o, &prev);
        EXPECT_EQ(drafted.tokens, plain.tokens) << "clip " << c << " at " << end;
        EXPECT_NEAR(drafted.meanProb, plain.meanProb, 1e-5);
        plainSteps += plain.steps;
        draftSteps += drafted.steps;
        prev = plain.tokens;
        if (!prev.empty() && prev.back() == moonshine::Model::kEosToken) prev.pop_back();
        if (end == clip.size()) {
          std::vector<int64_t> wrong = prev;
          wrong[wrong.size() / 2] = 1000;
          EXPECT_EQ(model.transcribe(row, o, &wrong).tokens, plain.tokens) << "clip " << c << ", a wrong draft";
          break;
        }
      }
    }
  };
  std::thread a(run, 0), b(run, 1);
  a.join();
  b.join();
  EXPECT_LT(draftSteps.load(), plainSteps.load() / 2);
}

// Finals' beam search: a row's beams and its greedy decode run as rows of
// one batch, and where rows are independent (base) its tokens are the same
// whatever other rows share the batch, from two threads at once, and the
// greedy row's are those of the greedy decode alone; the token limit ends
// every beam.
TEST(Moonshine, BaseBeamSearchGivesEachRowItsOwnTokensWhateverItIsBatchedWith) {
  if (!baseInstalled()) GTEST_SKIP() << "Moonshine base or the ONNX Runtime library is not installed";
  ASSERT_GE(clips().size(), 5u) << "pocketsphinx-testdata is not installed";
  const moonshine::Model model(baseModelSettings());
  moonshine::DecodeOptions o;
  o.beamWidth = 4;
  // The first 3 s of each clip: rows of equal length.
  std::vector<std::vector<float>> rows;
  for (size_t c = 0; c < 5; ++c) {
    const std::vector<float> clip = clipAsFloat(c);
    rows.emplace_back(clip.begin(), clip.begin() + std::min<std::ptrdiff_t>(48000, static_cast<std::ptrdiff_t>(clip.size())));
    rows.back().resize(48000, 0.f);
  }
  std::vector<moonshine::Transcript> alone(rows.size());
  for (size_t c = 0; c < rows.size(); ++c) alone[c] = model.transcribe(rows[c], o);
  auto batched = [&](size_t from, size_t to) {
    std::vector<const std::vector<float>*> batch;
    for (size_t c = from; c < to; ++c) batch.push_back(&rows[c]);
    const auto got = model.transcribe(batch, o);
    for (size_t c = from; c < to; ++c) {
      EXPECT_EQ(got[c - from].tokens, alone[c].tokens) << "row " << c << " in a batch of " << batch.size();
      EXPECT_NEAR(got[c - from].meanProb, alone[c].meanProb, 1e-5);
      EXPECT_EQ(got[c - from].beams, 4);
    }
  };
  std::thread a(batched, 0, 5), b(batched, 1, 3);
  a.join();
  b.join();
  const moonshine::DecodeOptions plain;
  for (size_t c = 0; c < rows.size(); ++c) {
    EXPECT_FALSE(alone[c].text.empty()) << "row " << c;
    EXPECT_EQ(alone[c].tokens.back(), moonshine::Model::kEosToken) << "row " << c << " did not end";
    ASSERT_TRUE(alone[c].greedy) << "row " << c;
    const auto greedy = model.transcribe(rows[c], plain);
    EXPECT_EQ(alone[c].greedy->tokens, greedy.tokens) << "row " << c;
    EXPECT_EQ(alone[c].greedy->text, greedy.text) << "row " << c;
    EXPECT_NEAR(alone[c].greedy->meanProb, greedy.meanProb, 1e-5);
    EXPECT_NEAR(alone[c].firstEosProb, greedy.firstEosProb, 1e-5);
  }
  o.maxTokensPerSecond = 1;  // 3 tokens for 3 s: every beam hits the limit
  const auto limited = model.transcribe(rows[0], o);
  EXPECT_TRUE(limited.hitMaxTokens);
  EXPECT_EQ(limited.tokens.size(), 3u);
  EXPECT_TRUE(limited.greedy->hitMaxTokens);
  EXPECT_EQ(limited.greedy->tokens.size(), 3u);
}

// Tiny's beam search (its beams share activation scales, so only its own
// beams may share a batch): the same tokens for the same audio, from two
// threads at once, and text for every LibriVox clip.
TEST(Moonshine, TinyBeamSearchIsRepeatableAcrossThreads) {
  if (!installed()) GTEST_SKIP() << "Moonshine tiny or the ONNX Runtime library is not installed";
  ASSERT_GE(clips().size(), 5u) << "pocketsphinx-testdata is not installed";
  moonshine::ModelSettings ms;
  ms.dir = CAPTIONGATE_MOONSHINE_TINY;
  ms.ortLibrary = CAPTIONGATE_ORT_LIBRARY;
  const moonshine::Model model(ms);
  moonshine::DecodeOptions o;
  o.beamWidth = 4;
  std::vector<moonshine::Transcript> first(clips().size()), again(clips().size());
  auto run = [&](std::vector<moonshine::Transcript>& out) {
    for (size_t c = 0; c < clips().size(); ++c) out[c] = model.transcribe(clipAsFloat(c), o);
  };
  std::thread a(run, std::ref(first)), b(run, std::ref(again));
  a.join();
  b.join();
  for (size_t c = 0; c < clips().size(); ++c) {
    EXPECT_EQ(first[c].tokens, again[c].tokens) << "clip " << c;
    EXPECT_FALSE(first[c].text.empty()) << "clip " << c;
    EXPECT_EQ(first[c].beams, 4);
  }
}

// A step budget (the recognizer's partials) gives a prefix of the full
// decode, and each such prefix, as the next budgeted decode's draft, moves it
// on: budgeted decodes of one clip, each from the last one's tokens, reach
// the full decode's tokens.
TEST(Moonshine, BaseStepBudgetsGivePrefixesThatCatchUpAsDrafts) {
  if (!baseInstalled()) GTEST_SKIP() << "Moonshine base or the ONNX Runtime library is not installed";
  ASSERT_GE(clips().size(), 5u) << "pocketsphinx-testdata is not installed";
  const moonshine::Model model(baseModelSettings());
  moonshine::DecodeOptions budget;
  budget.maxSteps = 3;
  for (size_t c = 0; c < clips().size(); ++c) {
    const std::vector<float> clip = clipAsFloat(c);
    const auto full = model.transcribe(clip, moonshine::DecodeOptions{});
    ASSERT_GT(full.tokens.size(), 8u) << "clip " << c;
    std::vector<int64_t> draft;
    int rounds = 0;
    for (;; ++rounds) {
      ASSERT_LT(rounds, 40) << "clip " << c << ": the budgeted decodes never reach the full decode";
      const auto part = model.transcribe(clip, budget, draft.empty() ? nullptr : &draft);
      ASSERT_LE(part.tokens.size(), full.tokens.size()) << "clip " << c;
      EXPECT_TRUE(std::equal(part.tokens.begin(), part.tokens.end(), full.tokens.begin())) << "clip " << c << ", round " << rounds;
      EXPECT_LE(part.steps, 1 + budget.maxSteps) << "clip " << c;  // the draft's run and the budget
      if (!part.stepLimited) {
        EXPECT_EQ(part.tokens, full.tokens) << "clip " << c;
        break;
      }
      EXPECT_GT(part.tokens.size(), draft.size()) << "clip " << c << ": a budgeted decode did not move the draft on";
      draft = part.tokens;
    }
    EXPECT_GE(rounds, 2) << "clip " << c << ": three steps decoded the whole clip";
  }
}

// Each LibriVox clip, then 1 s of digital silence (what WebRTC sends for a
// muted or quiet talker). The endpoint comes vad.endMs (500 ms) after the
// last word, give or take the VAD: before, the front end called the drop to
// digital silence speech for a few frames, and clip 0930 ended 980 ms after
// its last word. And the last word ends where the speech does, not at a
// breath after it: clip 0870's last word ("them") ends at 6.66 s by its
// energy, and a breath 12 dB over the floor follows at 6.97-7.06 s.
TEST(Moonshine, TheEndpointAndWordsFollowTheSpeechNotABreathOrTheDropToSilence) {
  if (!installed()) GTEST_SKIP() << "moonshine models or ONNX Runtime not installed";
  ASSERT_GE(clips().size(), 5u) << "pocketsphinx-testdata is not installed";
  Harness h(std::make_unique<MoonshineRecognizer>(settings(2)));
  h.engine().load();
  for (size_t i = 0; i < clips().size(); ++i) {
    SCOPED_TRACE("clip " + std::to_string(i));
    std::vector<int16_t> pcm(8000, 0);
    pcm.insert(pcm.end(), clips()[i].begin(), clips()[i].end());
    pcm.insert(pcm.end(), 16000, 0);
    const std::vector<Utterance> finals = transcribe(h, pcm);
    ASSERT_FALSE(finals.empty());
    const Utterance& u = finals.back();
    ASSERT_FALSE(u.words.empty()) << "no text";
    const int64_t wordEnd = u.startSample + (static_cast<int64_t>(u.words.back().endFrame) + 1) * 160;
    EXPECT_LT(u.endSample, static_cast<int64_t>(pcm.size())) << "no endpoint before the flush";
    EXPECT_LE(u.endSample - wordEnd, 8000 + 3200) << "the endpoint comes 700 ms after the last word";
    if (i == 0) {  // clips() are sorted by file name: 0870 first
      EXPECT_LT(wordEnd - 8000, 16000 * 68 / 10) << "clip 0870's last word runs on to the breath";
    }
    std::printf("clip %zu: last word ends %.2f s, endpoint %+.0f ms\n", i, (wordEnd - 8000) / 16000.0, (u.endSample - wordEnd) / 16.0);
  }
}

TEST(Moonshine, ShutdownMidSpeechFromTwoThreads) {
  if (!installed()) GTEST_SKIP() << "Moonshine tiny or the ONNX Runtime library is not installed";
  Harness h(std::make_unique<MoonshineRecognizer>(settings(2)));
  h.engine().load();
  std::vector<uint32_t> ids;
  std::vector<uint64_t> batches;
  for (int s = 0; s < 3; ++s) {
    const uint32_t id = h.engine().openStream();
    ids.push_back(id);
    std::vector<WindowIn> ws;
    for (size_t pos = 0; pos + 1600 <= 40000; pos += 1600) {
      WindowIn w;
      w.stream = id;
      w.start = static_cast<int64_t>(pos);
      w.pcm.assign(clips()[s].begin() + static_cast<std::ptrdiff_t>(pos), clips()[s].begin() + static_cast<std::ptrdiff_t>(pos + 1600));
      ws.push_back(std::move(w));
    }
    batches.push_back(h.submit(std::move(ws)));
  }
  EXPECT_GT(h.engine().stats().modelBytes, 0);
  std::thread a([&] { h.engine().shutdown(); });
  std::thread b([&] { h.engine().shutdown(); });
  a.join();
  b.join();
  for (uint64_t id : batches) {
    auto r = h.wait(id);
    for (auto& w : r->out) EXPECT_TRUE(w.error == ErrorCode::kNone || w.error == ErrorCode::kShutdown) << w.errorMessage;
  }
  EXPECT_EQ(h.engine().stats().decodersInUse, 0);
  EXPECT_EQ(h.engine().stats().modelBytes, 0) << "the model is freed at shutdown, not when the engine object goes";
}

TEST(Moonshine, AFaultFailsItsStreamOnly) {
  if (!installed()) GTEST_SKIP() << "Moonshine tiny or the ONNX Runtime library is not installed";
  Harness h(std::make_unique<MoonshineRecognizer>(settings(2)));
  h.engine().load();
  const uint32_t bad = h.engine().openStream();
  ASSERT_TRUE(h.engine().injectFault(bad, EngineBase::Fault::kThrow));
  WindowIn w = window(bad, 0, 1600, false);
  auto r = h.run({std::move(w)})[0];
  EXPECT_EQ(r.error, ErrorCode::kDecodeFailed);
  h.engine().closeStream(bad);
  auto good = transcribe(h, padded(clips()[4]));
  ASSERT_FALSE(good.empty());
  EXPECT_FALSE(good[0].text.empty());
}

TEST(Moonshine, AMissingModelIsAClearError) {
  if (!installed()) GTEST_SKIP() << "Moonshine tiny or the ONNX Runtime library is not installed";
  Harness h(std::make_unique<MoonshineRecognizer>(settings(1, "/nonexistent/moonshine-tiny")));
  try {
    h.engine().load();
    FAIL() << "load succeeded";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/moonshine-tiny/tokenizer.bin"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace captiongate::test
