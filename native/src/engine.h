// The streaming engine core, free of N-API so it can be reasoned about (and
// sanitized) on its own.
//
//   submit(batch) ──► per-stream FIFO ──► run queue ──► worker threads
//                                                        │  VAD every window
//                                                        │  decoder only inside an utterance
//                                                        ▼
//                         completed batches / events ──► notify() (to JS)
//
// Ordering: a stream is processed by at most one worker at a time, windows in
// submission order. Decoders are a fixed pool; a stream holds one only from
// speech onset to endpoint. When none is free the stream parks at the onset:
// its window reports how many samples it consumed (those before the onset),
// the caller keeps the rest and resubmits after a "ready" event, which is
// sent when a decoder has been reserved for the stream (FIFO, so fair).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "ps_decoder.h"
#include "vad.h"

namespace captiongate {

struct EngineSettings {
  SearchSettings search;
  VadSettings vad;
  int threads = 2;
  int decoders = 4;
  int prerollSamples = 4800;          // audio fed before the VAD trigger
  int maxUtteranceSamples = 16000 * 30;  // forced endpoint for run-on speech
  bool wordConfidence = true;
  // false: no speech detection; an utterance runs from the first sample to
  // each flush (push-to-talk clients, and whole-file reference decoding).
  bool vadEnabled = true;
};

enum class ErrorCode : int {
  kNone = 0,
  kDecodeFailed = 1,   // the decoder reported an error for this window
  kStreamClosed = 2,   // window arrived for a stream that was closed
  kShutdown = 3,       // engine shut down before the window ran
  kBadWindow = 4,      // window does not continue the stream
};

struct WindowIn {
  uint32_t stream = 0;
  int64_t start = 0;  // stream sample position of pcm[0]
  std::vector<int16_t> pcm;
  bool flush = false;  // end the open utterance after this window
};

struct WindowOut {
  uint32_t stream = 0;
  uint32_t consumed = 0;       // samples of this window the engine took
  bool hasPartial = false;
  std::string partial;
  int64_t partialStart = 0;
  int64_t partialEnd = 0;
  std::vector<Utterance> finals;
  bool inSpeech = false;       // an utterance is open after this window
  bool endpoint = false;       // an utterance ended in this window
  bool waiting = false;        // parked: no decoder free
  bool flushed = false;        // the flush request was carried out
  double decoderWaitMs = 0;    // wait that ended in this window
  int64_t position = 0;        // stream position after this window
  ErrorCode error = ErrorCode::kNone;
  std::string errorMessage;
};

struct Batch {
  uint64_t id = 0;
  std::vector<WindowIn> in;
  std::vector<WindowOut> out;
  size_t remaining = 0;  // guarded by Engine::mu_
};

struct EngineStats {
  int decoders = 0;
  int decodersInUse = 0;   // held or reserved by a stream
  int streams = 0;
  int streamsWaiting = 0;  // parked for a decoder
  uint64_t windowsProcessed = 0;
  uint64_t samplesProcessed = 0;
  uint64_t samplesDecoded = 0;  // fed to a decoder (speech + margins)
  uint64_t decoderWaits = 0;
  double decoderWaitMsTotal = 0;
  uint64_t queuedWindows = 0;
  double busyMs = 0;  // wall time workers spent processing windows
};

class Engine {
 public:
  // Called from worker threads whenever there is something to deliver; the
  // receiver then drains with takeCompleted()/takeReady().
  using Notify = std::function<void()>;

  Engine(EngineSettings settings, Notify notify);
  ~Engine();  // stops and joins workers; frees decoders

  // Loads the decoder pool. Slow (about 0.3 s per decoder); call off the
  // main thread.
  bool load(std::string* error);

  uint32_t openStream(std::string* error);
  // Marks the stream closed. Cleanup (which may end an utterance) runs on a
  // worker; queued windows complete with kStreamClosed. Returns false if the
  // id is unknown or already closed.
  bool closeStream(uint32_t id);
  bool streamOpen(uint32_t id);

  // Takes ownership of the batch. Returns false (and leaves batch intact) if
  // the engine is shutting down or a stream is unknown/closed.
  bool submit(std::unique_ptr<Batch> batch, std::string* error);

  std::vector<std::unique_ptr<Batch>> takeCompleted();
  std::vector<uint32_t> takeReady();

  // Stops accepting work, completes queued windows with kShutdown, joins.
  void shutdown();
  bool isShutdown() const { return stopping_.load(); }

  EngineStats stats();
  // Test hook: the next window of this stream fails as if decoding failed.
  void injectFault(uint32_t id);

 private:
  struct Stream;
  void workerLoop();
  void processWindow(Stream& s, const WindowIn& w, WindowOut& out);
  bool acquireDecoder(Stream& s);                  // worker, takes mu_
  void releaseDecoder(Stream& s);                  // worker, takes mu_
  void endUtterance(Stream& s, WindowOut& out);     // worker
  void cleanupStream(Stream& s);                    // worker
  void completeWindow(Batch* b);                    // under mu_
  void schedule(Stream* s);                         // under mu_

  EngineSettings settings_;
  Notify notify_;

  std::mutex mu_;
  std::mutex joinMu_;  // serializes shutdown()'s join
  std::condition_variable cv_;
  bool stopFlag_ = false;
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> workers_;
  std::vector<std::unique_ptr<PsDecoder>> decoders_;
  std::vector<PsDecoder*> freeDecoders_;
  std::deque<Stream*> runQueue_;
  std::deque<Stream*> waiters_;
  std::unordered_map<uint32_t, std::unique_ptr<Stream>> streams_;
  uint32_t nextStreamId_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Batch>> inflight_;
  std::vector<std::unique_ptr<Batch>> completed_;
  std::vector<uint32_t> ready_;
  EngineStats stats_;
  CmnState initialCmn_;
};

}  // namespace captiongate
