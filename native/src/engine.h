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
#include "stream_engine.h"
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

class Engine : public StreamEngine {
 public:
  // Called from worker threads whenever there is something to deliver; the
  // receiver then drains with takeCompleted()/takeReady().
  using Notify = std::function<void()>;

  Engine(EngineSettings settings, Notify notify);
  ~Engine() override;  // stops and joins workers; frees decoders

  // Loads the decoder pool. Slow (about 0.3 s per decoder); call off the
  // main thread.
  bool load(std::string* error) override;

  uint32_t openStream(std::string* error) override;
  // Marks the stream closed. Cleanup (which may end an utterance) runs on a
  // worker; queued windows complete with kStreamClosed. Returns false if the
  // id is unknown or already closed.
  bool closeStream(uint32_t id) override;
  bool streamOpen(uint32_t id);

  // Takes ownership of the batch. Returns false (and leaves batch intact) if
  // the engine is shutting down or a stream is unknown/closed.
  bool submit(std::unique_ptr<Batch> batch, std::string* error) override;

  std::vector<std::unique_ptr<Batch>> takeCompleted() override;
  std::vector<uint32_t> takeReady() override;

  // Stops accepting work, completes queued windows with kShutdown, joins.
  void shutdown() override;
  bool isShutdown() const override { return stopping_.load(); }

  EngineStats stats() override;
  // Test hook: the next window of this stream fails as if decoding failed.
  void injectFault(uint32_t id) override;

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
