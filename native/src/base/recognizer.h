// The plug-in interface of the native engine. A recognizer is a decoder of a
// batch of windows from many streams (sherpa-onnx's IsReady/DecodeStreams);
// EngineBase (engine_base.h) owns everything else: the stream table, the
// queue, the worker threads, ordering, errors, closing, shutdown and the
// delivery of results to JS. Adding an engine means writing a Recognizer and
// nothing else (then one line in napi/engine_wrap.cc to build it from options).
//
// Context apart from state, as whisper.cpp keeps whisper_context apart from
// whisper_state: the Recognizer holds what is loaded once and only read
// afterwards (weights, a decoder pool); each stream's mutable state lives in
// its own RecognizerStream, created per stream and handed back on every call.
//
// Threads. load() runs once, off the JS thread, before createStream(),
// decode() or closeStream(). createStream() runs on the JS thread. decode()
// and closeStream() run on the base's worker threads, up to workers() of them
// at once, but never two calls with the same stream at a time: while a
// stream's state is inside one call, no other call sees it. stats() may run
// on any thread at any time (including during decode): keep its counters
// atomic or under the recognizer's own lock.
//
// Errors. decode() may throw any std::exception (std::bad_alloc included):
// the base fails every job of that call with kDecodeFailed and the what()
// text, and fails those streams (their later windows fail without reaching
// the recognizer; closeStream() is still called for them). A recognizer
// that can tell which window failed sets that WindowOut's error instead of
// throwing. closeStream() and stats() must not throw.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "types.h"

namespace captiongate {

// What the base offers a recognizer. Thread-safe; may be called from inside
// decode() or closeStream().
class RecognizerHost {
 public:
  // A stream that parked (WindowOut::waiting) may resubmit the rest of its
  // window now: e.g. a decoder has been reserved for it. Parking is the
  // recognizer's business; the base only delivers this to JS (onReady).
  virtual void streamReady(uint32_t stream) = 0;

 protected:
  ~RecognizerHost() = default;
};

// A stream's mutable state. The recognizer derives its own; the base owns
// the object and destroys it after closeStream().
class RecognizerStream {
 public:
  virtual ~RecognizerStream() = default;
};

// One stream's window in a decode() call. Every job of a call has a distinct
// stream. `in.start` is the stream's consumption so far (the base has
// checked it), `out` is value-initialized with out.stream set.
struct DecodeJob {
  RecognizerStream& state;
  uint32_t stream;
  const WindowIn& in;
  WindowOut& out;
};

class Recognizer {
 public:
  virtual ~Recognizer() = default;

  // Loads the model (weights, decoders). Called once, off the JS thread.
  // Throws std::exception with a message for the user on failure. The host
  // outlives every later call.
  virtual void load(RecognizerHost& host) = 0;

  // How many base threads call decode() concurrently (PocketSphinx: one per
  // engine thread; a recognizer with its own parallelism inside, such as
  // Whisper's BLAS, says 1).
  virtual int workers() const = 0;

  // Most streams a worker hands to one decode() call; 0 means no limit (the
  // call takes every ready stream, which is how a batched encoder sees all
  // the work there is).
  virtual size_t maxStreamsPerDecode() const = 0;

  // A new stream's state (JS thread; after load(); possibly while other
  // streams decode). Throws on failure. The id is the stream's for life.
  // `options` are the stream's own settings (its endpoint silence); a
  // recognizer without a VAD has nothing to apply them to.
  virtual std::unique_ptr<RecognizerStream> createStream(uint32_t stream, const StreamOptions& options) = 0;

  // Decodes one window of each job's stream. For each job set out.consumed
  // (all of in.pcm unless the stream parks: then out.waiting and the samples
  // taken before the park), the partial, the finals (time order; every
  // utterance opened ends with exactly one final, possibly empty) and
  // out.flushed when in.flush was carried out.
  virtual void decode(const std::vector<DecodeJob>& jobs) = 0;

  // The stream is gone: release what it holds (a decoder, a parking place).
  // On a worker, when none of its windows is queued or running; or on the
  // thread that shuts the engine down, after the workers have stopped.
  // Called exactly once per created stream, also for streams that failed.
  virtual void closeStream(RecognizerStream& state, uint32_t stream) noexcept = 0;

  virtual RecognizerStats stats() const = 0;

  // The engine is shut down: free what load() loaded (weights, decoders).
  // Called once, on the thread that shuts the engine down, after the workers
  // have stopped, every stream is closed and no createStream() is running;
  // only stats() may run during or after it. Without it the weights (600 MB
  // for Moonshine base) would stay until the JS wrapper is collected, and
  // the collector never hears of them.
  virtual void release() noexcept {}
};

}  // namespace captiongate
