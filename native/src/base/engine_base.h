// The native engine: one base that serves every recognizer. Free of N-API, so
// the C++ tests (native/test) run it under ThreadSanitizer without Node.
//
//   submit(batch) ──► per-stream FIFO of windows ──► run queue of ready streams
//                                                        │ a worker takes up to
//                                                        │ maxStreamsPerDecode streams
//                                                        │ (none set: its share, ready / idle workers),
//                                                        │ the first window of each
//                                                        ▼
//                                          Recognizer::decode(jobs)
//                                                        │
//   takeCompleted() / takeReady() ◄── notify() ◄─────────┘ (a batch completes when
//                                                           all its windows are done)
//
// What the base guarantees every recognizer (and so every engine's callers):
// - A stream is decoded by at most one worker at a time, its windows in
//   submission order; one decode() call never holds two windows of a stream.
// - A window starts where its stream's consumption stands (the sum of every
//   `consumed`), or it completes with kBadWindow without reaching the
//   recognizer.
// - A window's error fails its stream: its later windows complete at once
//   with the same code and message. An exception thrown by the recognizer
//   (std::bad_alloc included) fails every job of that call; nothing escapes
//   a worker thread.
// - closeStream completes the stream's queued windows with kStreamClosed;
//   Recognizer::closeStream then runs on a worker once nothing of the stream
//   runs, and the stream is forgotten.
// - shutdown completes every queued window with kShutdown, lets running ones
//   finish, joins the workers (once, whoever calls), and closes every stream
//   left. load() and shutdown() are serialized: a shutdown during load waits
//   for it, and a load after shutdown fails.
#pragma once

#include <atomic>
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

#include "recognizer.h"
#include "types.h"

namespace captiongate {

class EngineBase final : private RecognizerHost {
 public:
  // Called (from any thread, never with the base's lock held) when there is
  // something to take: a completed batch or a ready stream. It must not call
  // back into the engine; the receiver drains with takeCompleted()/takeReady()
  // later, on its own thread. Calls are not coalesced here.
  using Notify = std::function<void()>;

  // Test hooks (injectFault). kFail: the stream's next window completes with
  // kDecodeFailed without reaching the recognizer. kThrow / kBadAlloc: the
  // next decode() call that holds the stream throws std::runtime_error /
  // std::bad_alloc inside the worker, as if the recognizer had.
  enum class Fault { kFail, kThrow, kBadAlloc };

  EngineBase(std::unique_ptr<Recognizer> recognizer, Notify notify);
  ~EngineBase();  // shutdown(); must not run on a worker thread
  EngineBase(const EngineBase&) = delete;
  EngineBase& operator=(const EngineBase&) = delete;

  // Loads the recognizer and starts its workers. Slow: call off the JS
  // thread. Throws std::exception on failure, and if already loaded or shut
  // down.
  void load();

  // Throws std::runtime_error if not loaded or shut down, std::invalid_argument
  // for options out of range.
  uint32_t openStream(const StreamOptions& options = {});
  // Returns false if the id is unknown or already closed.
  bool closeStream(uint32_t id);
  bool streamOpen(uint32_t id) const;

  // Takes the batch and returns kNone, or leaves it with the caller and says
  // why: kShutdown, or kStreamClosed (a window's stream is closed or unknown).
  ErrorCode submit(std::unique_ptr<Batch>& batch, std::string* error);

  std::vector<std::unique_ptr<Batch>> takeCompleted();
  // Streams named by Host::streamReady that are still open.
  std::vector<uint32_t> takeReady();

  // Idempotent, serialized; returns once workers are joined, every stream's
  // recognizer state is closed and the recognizer has released its model.
  void shutdown();
  bool isShutdown() const { return stopping_.load(); }

  EngineStats stats() const;
  // Returns false if the stream is unknown or closed.
  bool injectFault(uint32_t id, Fault fault);

  Recognizer& recognizer() { return *recognizer_; }

 private:
  struct Entry;
  void streamReady(uint32_t id) override;
  void workerMain();
  void workerLoop();
  bool completeWindow(Batch* b);  // under mu_; true if the batch completed
  void schedule(Entry* e);        // under mu_
  void fail(Entry* e, ErrorCode code, const std::string& message);  // under mu_

  const std::unique_ptr<Recognizer> recognizer_;
  const Notify notify_;

  std::mutex lifecycleMu_;  // serializes load() and shutdown()
  bool shutDown_ = false;   // under lifecycleMu_
  std::vector<std::thread> workers_;  // under lifecycleMu_

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool loaded_ = false;
  bool stop_ = false;
  std::atomic<bool> stopping_{false};
  // openStream() calls between reserving an id and being done with the
  // recognizer; shutdown() waits on created_ for none before release().
  size_t creating_ = 0;
  std::condition_variable created_;
  std::deque<Entry*> runQueue_;
  // Workers not inside a decode call. With no maxStreamsPerDecode, a worker
  // takes its share of the ready streams (ready / idle workers), so work
  // that arrives together runs on every idle thread, not on one.
  size_t idleWorkers_ = 0;
  std::unordered_map<uint32_t, std::unique_ptr<Entry>> streams_;
  uint32_t nextStreamId_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Batch>> inflight_;
  std::vector<std::unique_ptr<Batch>> completed_;
  std::vector<uint32_t> ready_;
  EngineStats stats_;  // the base's own counters
};

}  // namespace captiongate
