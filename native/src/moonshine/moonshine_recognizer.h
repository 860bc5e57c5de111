// Moonshine as a recognizer of the engine base. Captions from an encoder
// whose cost grows with the audio (no 30 s window), so the open utterance
// can be re-decoded often:
//
//   windows ──► per-stream VAD + loudness ──► utterance audio (from onset − preroll)
//                 │ a pause of tailMs after the last loud frame: speculative final
//                 │ every partialIntervalMs (wall; longer as partials grow, and under load) with new audio: partial
//                 │ at the endpoint / flush / max length: final (the speculative one if it matches)
//                 ▼
//   one decode() call = one round on one thread: the jobs of every stream in
//   the call, run batch-1 (tiny) or in batches of equal length (base).
//   `threads` base workers run rounds side by side, each ORT run on its
//   worker's thread (intra-op threads: 1), so a long final on one worker
//   never holds up the windows of the streams the others take.
//
// Finals are decoded once, from a span of the utterance fixed by the audio
// alone, and never revised; an utterance that decodes to nothing, or to
// punctuation only, ends with an empty final. Partials are tentative and
// give way first: a round runs every final (and speculative final) and only
// the partials that fit beside them in about roundMs (a preview decode rides
// on its main partial, beyond that). Where the model takes
// drafts (base), each decode starts from the stream's latest tokens, and a
// partial decodes only the steps that fit in its cost cap: it keeps the
// draft up with the speech, so the final is left with few steps to run.
//
// The final's span. At a VAD endpoint the utterance audio ends
// `vad.endMs` after the speech; the span kept is [onset − preroll,
// last loud frame + tailMs] (loud: 12 dB over the stream's noise floor, and
// inside an utterance, speech to the VAD's raw per-frame decision unless
// within 150 ms of the previous loud frame), or
// the whole utterance if no loud frame was seen. The moment a pause reaches
// tailMs, that span is known, and it is decoded at once (a speculative
// final; its text is shown as a partial). If the endpoint comes with no loud
// frame since, the final is that result: no decode is left after the
// endpoint. If speech resumes, the speculative result was only a partial.
// Either way the span, and so the final, depends on the audio only, never
// on load or timing: finals of a stream do not depend on its batch-mates.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <algorithm>
#include <string>
#include <vector>

#include "../audio/vad.h"
#include "../base/recognizer.h"
#include "model.h"

namespace captiongate::moonshine {

struct MoonshineSettings {
  ModelSettings model;
  // A faster model (tiny beside base) whose text is the open utterance's
  // partial until the main model has given it any: base decodes some
  // openings to nothing until 0.7 s of speech, where tiny has words. Its
  // decodes are partials (they give way first, under the same noise rule),
  // shown only beside a main decode of the same round that is empty and
  // unsure the speech is over (kPreviewMaxEosProb), and kept up until the
  // main model has text; finals are always the main model's. Empty dir: no
  // preview.
  ModelSettings preview;
  DecodeOptions decode;  // greedy, as upstream
  // Over 1: finals (and speculative finals) are beam searches this wide,
  // with the greedy decode as one more row of the same runs; the beam's text
  // is the final's where both may be shown, else the greedy decode's. Tiny
  // reads more words right (flite story: 48 errors in 1,071 words where
  // greedy makes 57; docs/moonshine.md, policy 9) for more work per final,
  // which is decoded once. No drafts for them.
  int finalBeamWidth = 1;
  int threads = 2;   // base workers (engine.threads); each ORT run uses model.intraOpThreads
  int maxBatch = 8;  // rows per batch where rows are independent (base, equal lengths)
  VadSettings vad;
  bool vadEnabled = true;
  int prerollSamples = 4800;
  int maxUtteranceSamples = 16000 * 15;
  int partialIntervalMs = 100;
  int tailSamples = 3200;  // 200 ms
  int roundMs = 100;
  // Partials give way first, across every worker: all decoding (finals,
  // speculative finals, partials) is kept under this share of `threads`
  // over wall time, and only partials wait for it. Finals always run.
  double partialLoadShare = 0.5;
  double loudDb = 12;  // a frame is loud this far over the noise floor
  // Inside an utterance, a frame less than this far over the noise floor is
  // silence to the endpoint, whatever the VAD says.
  double quietDb = 6;
  // A decode whose text tokens have a mean probability below minMeanProb
  // gives no text, nor one below unfinishedMinProb that does not end in
  // punctuation: tiny reads noise bursts as an unsure, unpunctuated word or
  // three ("So", "You" at 0.16-0.23, "I'm gonna go" at 0.37), where short
  // real words score 0.25 and up and end in punctuation, and unpunctuated
  // ones score 0.77 and up (docs/moonshine.md).
  double minMeanProb = 0.25;
  double unfinishedMinProb = 0.5;
};

// The noise rule above: true if the decode's text may be shown.
bool plausible(const std::string& text, double meanProb, double minMeanProb, double unfinishedMinProb);

// Text with no letter or digit (empty, or punctuation only) is no caption.
bool hasWords(const std::string& text);

class MoonshineRecognizer : public Recognizer {
 public:
  explicit MoonshineRecognizer(MoonshineSettings settings);
  ~MoonshineRecognizer() override;

  void load(RecognizerHost& host) override;
  // `threads` rounds at once, each on its base worker (no other threads).
  int workers() const override { return std::max(1, settings_.threads); }
  size_t maxStreamsPerDecode() const override { return 0; }
  std::unique_ptr<RecognizerStream> createStream(uint32_t stream, const StreamOptions& options) override;
  void decode(const std::vector<DecodeJob>& jobs) override;
  void closeStream(RecognizerStream& state, uint32_t stream) noexcept override;
  RecognizerStats stats() const override;
  void release() noexcept override;

  const Model* model() const { return model_.get(); }

 private:
  struct Stream;
  struct Job;
  // Cost model of one model: encoder ms per audio second and ms per decoder
  // step, learned from every run (workers update it without ordering: an
  // estimate).
  struct Cost {
    std::atomic<double> encMsPerSecond{10};
    std::atomic<double> stepMs{5};
    std::atomic<double> beamStepMs{10};  // a step of a beam search (its beams' rows in one run)
  };
  void processWindow(Stream& s, const WindowIn& w, WindowOut& out, std::vector<Job>& jobs);
  void runJobs(std::vector<Job>& jobs);
  // Predicted cost of a decode of `samples`, with a draft of `draft` tokens,
  // and at most `maxSteps` decoder steps after the draft's run (0: no limit),
  // by the main model or (`preview`) the preview model, greedy or with
  // `beams` beams.
  double predictMs(size_t samples, size_t draft, int maxSteps = 0, bool preview = false, int beams = 1) const;
  // The most a partial alone in a round may cost (more where it is a draft).
  double partialCapMs() const;
  // A partial's step budget where the model takes drafts: the steps that fit
  // in partialCapMs() beside its encoder and draft runs (0: no limit).
  int partialSteps(size_t samples, size_t draft) const;
  // The partial credit (see partialLoadShare): refilled over wall time,
  // spent by every job's predicted cost, squared with its measured cost;
  // refillCredit returns what is left after spending spendMs.
  double refillCredit(double spendMs);
  void spendCredit(double ms);
  void spendLocked(double ms);  // under creditMu_
  void learn(Cost& cost, const Transcript& t, size_t samples, size_t rows);
  static void warmUp(const Model& m, const DecodeOptions& o, Cost& cost, int beams);

  const MoonshineSettings settings_;
  std::unique_ptr<Model> model_;    // set once by load(), then only read; freed by release()
  std::unique_ptr<Model> preview_;  // likewise; null without a preview model
  Cost cost_;
  Cost previewCost_;

  std::atomic<int> inUtterance_{0};
  std::mutex creditMu_;
  double creditMs_ = 0;  // guarded by creditMu_
  std::chrono::steady_clock::time_point creditAt_{};  // guarded by creditMu_
  std::atomic<uint64_t> samplesDecoded_{0};
  std::atomic<bool> loaded_{false};
  std::atomic<double> modelBytes_{0};
};

}  // namespace captiongate::moonshine
