// Whisper behind the streaming contract. Captions from a window encoder:
//
//   windows ──► per-stream VAD ──► utterance audio (from onset − preroll)
//                                   │ every partialIntervalMs (wall) with new speech: partial job
//                                   │ at the endpoint / flush / max length: final job
//                                   ▼
//   one inference thread: jobs of all streams in this round ──► log-mel
//        ──► ONE encoder batch (B windows, M = B × frames) ──► batched greedy decode
//
// Finals are decoded once, from the whole utterance, and never revised.
// Partials re-decode the open utterance; under load they are the first thing
// dropped (finals are never dropped). Queued batches are merged into one round,
// so the encoder batch grows with load.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "../stream_engine.h"
#include "../vad.h"
#include "model.h"

namespace captiongate::whisper {

struct WhisperEngineSettings {
  std::string modelDir;
  std::string device = "cpu";       // "cpu", or "perturbed" (self-test proof)
  int threads = 2;                  // BLAS threads of the inference thread
  int maxBatch = 8;                 // windows per encoder batch
  VadSettings vad;
  bool vadEnabled = true;
  int prerollSamples = 4800;
  int maxUtteranceSamples = 16000 * 28;
  // An open utterance is re-decoded for a partial at most this often (wall
  // time), when it has new audio. Real-time streams get one per interval of
  // speech; a stream catching up faster than real time gets fewer, not a
  // decode per second of audio it has already passed.
  int partialIntervalMs = 1000;
  int minContextFrames = 1500;         // encoder frames at least (see docs/whisper.md)
  float noSpeechThreshold = 0.6f;      // with logprobThreshold: Whisper's silence rule
  float logprobThreshold = -1.0f;
  bool selfTest = true;                // compare the device to the CPU reference at load
};

class WhisperStreamEngine : public StreamEngine {
 public:
  using Notify = std::function<void()>;
  WhisperStreamEngine(WhisperEngineSettings settings, Notify notify);
  ~WhisperStreamEngine() override;

  bool load(std::string* error) override;
  uint32_t openStream(std::string* error) override;
  bool closeStream(uint32_t id) override;
  bool submit(std::unique_ptr<Batch> batch, std::string* error) override;
  std::vector<std::unique_ptr<Batch>> takeCompleted() override;
  std::vector<uint32_t> takeReady() override { return {}; }
  void shutdown() override;
  bool isShutdown() const override { return stopping_; }
  EngineStats stats() override;
  void injectFault(uint32_t id) override;

  // Encoder output of the device against the CPU device on a fixed input;
  // returns the cosine similarity. load() fails below 0.999.
  static double deviceSelfTest(WhisperModel& device, WhisperModel& reference);

 private:
  struct Stream;
  struct Job;
  void workerLoop();
  void runRound(std::vector<std::unique_ptr<Batch>>& round);
  void processWindow(Stream& s, const WindowIn& w, WindowOut& out, std::vector<Job>& jobs);
  void countUtterances();  // under mu_
  void runJobs(std::vector<Job>& jobs);

  WhisperEngineSettings settings_;
  Notify notify_;
  std::unique_ptr<WhisperModel> model_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopFlag_ = false;
  std::atomic<bool> stopping_{false};
  std::thread worker_;
  std::deque<std::unique_ptr<Batch>> queue_;
  std::vector<std::unique_ptr<Batch>> completed_;
  std::unordered_map<uint32_t, std::unique_ptr<Stream>> streams_;
  uint32_t nextStreamId_ = 1;
  EngineStats stats_;
};

}  // namespace captiongate::whisper
