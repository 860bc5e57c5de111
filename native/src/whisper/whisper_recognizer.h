// Whisper as a recognizer of the engine base. Captions from a window encoder:
//
//   windows ──► per-stream VAD ──► utterance audio (from onset − preroll)
//                                   │ every partialIntervalMs (wall) with new speech: partial job
//                                   │ at the endpoint / flush / max length: final job
//                                   ▼
//   one decode() call: the jobs of every ready stream ──► log-mel
//        ──► ONE encoder batch (B windows, M = B × frames) ──► batched greedy decode
//
// Finals are decoded once, from the whole utterance, and never revised; an
// utterance that decodes to nothing (or that Whisper's silence rule rejects)
// still gets its final, with empty text. Partials re-decode the open
// utterance; under load they are the first thing dropped (finals never are).
// workers() is 1 and maxStreamsPerDecode() unlimited: the base hands one call
// every stream that has a window, so the encoder batch grows with load, and
// the parallelism is BLAS's (engine.threads).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "../audio/vad.h"
#include "../base/recognizer.h"
#include "model.h"

namespace captiongate::whisper {

struct WhisperSettings {
  std::string modelDir;
  std::string device = "cpu";  // "cpu", or "perturbed" (self-test proof)
  int threads = 2;             // BLAS threads of the one decoding worker
  int maxBatch = 8;            // windows per encoder batch
  VadSettings vad;
  bool vadEnabled = true;
  int prerollSamples = 4800;
  int maxUtteranceSamples = 16000 * 28;
  // An open utterance is re-decoded for a partial at most this often (wall
  // time), when it has new audio. Real-time streams get one per interval of
  // speech; a stream catching up faster than real time gets fewer, not a
  // decode per second of audio it has already passed.
  int partialIntervalMs = 1000;
  int minContextFrames = 1500;     // encoder frames at least (see docs/whisper.md)
  float noSpeechThreshold = 0.6f;  // with logprobThreshold: Whisper's silence rule
  float logprobThreshold = -1.0f;
  bool selfTest = true;  // compare the device to the CPU reference at load
};

class WhisperRecognizer : public Recognizer {
 public:
  explicit WhisperRecognizer(WhisperSettings settings);
  ~WhisperRecognizer() override;

  void load(RecognizerHost& host) override;
  int workers() const override { return 1; }
  size_t maxStreamsPerDecode() const override { return 0; }
  std::unique_ptr<RecognizerStream> createStream(uint32_t stream, const StreamOptions& options) override;
  void decode(const std::vector<DecodeJob>& jobs) override;
  void closeStream(RecognizerStream& state, uint32_t stream) noexcept override;
  RecognizerStats stats() const override;
  void release() noexcept override;

  // Encoder output of the device against the CPU device on a fixed input;
  // returns the cosine similarity. load() fails below 0.999.
  static double deviceSelfTest(WhisperModel& device, WhisperModel& reference);

 private:
  struct Stream;
  struct Job;
  void processWindow(Stream& s, const WindowIn& w, WindowOut& out, std::vector<Job>& jobs);
  void runJobs(std::vector<Job>& jobs);

  const WhisperSettings settings_;
  std::unique_ptr<WhisperModel> model_;  // set once by load(), then used by the one worker; freed by release()

  std::atomic<int> inUtterance_{0};  // streams inside an utterance
  std::atomic<uint64_t> samplesDecoded_{0};
  std::atomic<bool> loaded_{false};
  std::atomic<double> modelBytes_{0};
};

}  // namespace captiongate::whisper
