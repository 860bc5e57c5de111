#include "engine_base.h"

#include <chrono>
#include <cstdio>
#include <new>
#include <stdexcept>

namespace captiongate {

namespace {
using Clock = std::chrono::steady_clock;
}  // namespace

struct EngineBase::Entry {
  uint32_t id = 0;
  std::unique_ptr<RecognizerStream> state;
  // All guarded by mu_.
  std::deque<std::pair<Batch*, size_t>> queue;  // windows not yet started
  int64_t position = 0;  // sum of consumed
  bool running = false;  // a worker holds the stream (decode or close)
  bool queued = false;   // in runQueue_
  bool closed = false;
  bool failed = false;
  ErrorCode failCode = ErrorCode::kNone;
  std::string failMessage;
  int faultFail = 0;
  int faultThrow = 0;
  int faultBadAlloc = 0;
};

EngineBase::EngineBase(std::unique_ptr<Recognizer> recognizer, Notify notify)
    : recognizer_(std::move(recognizer)), notify_(std::move(notify)) {}

EngineBase::~EngineBase() { shutdown(); }

void EngineBase::load() {
  std::lock_guard<std::mutex> lc(lifecycleMu_);
  if (shutDown_ || stopping_.load()) throw std::runtime_error("engine is shut down");
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (loaded_) throw std::runtime_error("engine already loaded");
  }
  recognizer_->load(*this);
  const int n = recognizer_->workers() < 1 ? 1 : recognizer_->workers();
  {
    std::lock_guard<std::mutex> lk(mu_);
    idleWorkers_ = static_cast<size_t>(n);
  }
  try {
    for (int i = 0; i < n; ++i) workers_.emplace_back([this] { workerMain(); });
  } catch (...) {
    // No stream exists yet: stop the workers that did start; the engine
    // stays unusable, as after a failed load.
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
      stopping_.store(true);
      cv_.notify_all();
    }
    for (auto& t : workers_) t.join();
    workers_.clear();
    throw;
  }
  std::lock_guard<std::mutex> lk(mu_);
  loaded_ = true;
}

uint32_t EngineBase::openStream(const StreamOptions& options) {
  if (options.endpointFrames < StreamOptions::kNoEndpoint)
    throw std::invalid_argument("endpointFrames must be >= 0, or kNoEndpoint");
  uint32_t id = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stop_) throw std::runtime_error("engine is shut down");
    if (!loaded_) throw std::runtime_error("engine is not loaded");
    do {
      id = nextStreamId_++;
      if (nextStreamId_ == 0) nextStreamId_ = 1;
    } while (id == 0 || streams_.count(id));
    // Reserve the id so a concurrent open cannot take it.
    streams_.emplace(id, nullptr);
    ++creating_;
  }
  // Counted until this call is done with the recognizer, so shutdown()
  // releases the model only after every createStream() (and the closeStream()
  // of a stream made while it shut down) has returned.
  struct Creating {
    EngineBase& base;
    ~Creating() {
      std::lock_guard<std::mutex> lk(base.mu_);
      if (--base.creating_ == 0) base.created_.notify_all();
    }
  } creating{*this};
  std::unique_ptr<Entry> e;
  try {
    e = std::make_unique<Entry>();
    e->id = id;
    e->state = recognizer_->createStream(id, options);
  } catch (...) {
    std::lock_guard<std::mutex> lk(mu_);
    streams_.erase(id);
    throw;
  }
  std::unique_lock<std::mutex> lk(mu_);
  if (stop_) {
    // Shut down while the state was being made: shutdown() skipped the
    // reserved id, so close the state here.
    streams_.erase(id);
    lk.unlock();
    recognizer_->closeStream(*e->state, id);
    throw std::runtime_error("engine is shut down");
  }
  streams_[id] = std::move(e);
  return id;
}

bool EngineBase::streamOpen(uint32_t id) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = streams_.find(id);
  return it != streams_.end() && it->second && !it->second->closed;
}

bool EngineBase::closeStream(uint32_t id) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = streams_.find(id);
    if (it == streams_.end() || !it->second || it->second->closed) return false;
    Entry* e = it->second.get();
    e->closed = true;
    while (!e->queue.empty()) {
      auto [b, i] = e->queue.front();
      e->queue.pop_front();
      --stats_.queuedWindows;
      b->out[i].stream = id;
      b->out[i].error = ErrorCode::kStreamClosed;
      b->out[i].errorMessage = "stream was closed before this window ran";
      wake |= completeWindow(b);
    }
    // The recognizer's cleanup (it may end an utterance, release a decoder)
    // runs on a worker, once nothing of the stream runs.
    schedule(e);
  }
  if (wake) notify_();
  return true;
}

ErrorCode EngineBase::submit(std::unique_ptr<Batch>& batch, std::string* error) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stop_) {
      *error = "engine is shut down";
      return ErrorCode::kShutdown;
    }
    for (const auto& w : batch->in) {
      auto it = streams_.find(w.stream);
      if (it == streams_.end() || !it->second || it->second->closed) {
        *error = "stream " + std::to_string(w.stream) + " is closed or unknown";
        return ErrorCode::kStreamClosed;
      }
    }
    Batch* b = batch.get();
    b->out.assign(b->in.size(), WindowOut{});
    b->remaining = b->in.size();
    inflight_.emplace(b->id, std::move(batch));
    if (b->remaining == 0) {
      b->remaining = 1;
      wake = completeWindow(b);
    } else {
      for (size_t i = 0; i < b->in.size(); ++i) {
        Entry* e = streams_[b->in[i].stream].get();
        e->queue.emplace_back(b, i);
        ++stats_.queuedWindows;
        schedule(e);
      }
    }
  }
  if (wake) notify_();
  return ErrorCode::kNone;
}

void EngineBase::schedule(Entry* e) {
  if (e->running || e->queued || stop_) return;
  if (!e->closed && e->queue.empty()) return;
  e->queued = true;
  runQueue_.push_back(e);
  cv_.notify_one();
}

bool EngineBase::completeWindow(Batch* b) {
  if (--b->remaining > 0) return false;
  auto it = inflight_.find(b->id);
  if (it == inflight_.end()) return false;
  completed_.push_back(std::move(it->second));
  inflight_.erase(it);
  return true;
}

void EngineBase::fail(Entry* e, ErrorCode code, const std::string& message) {
  if (e->failed) return;
  e->failed = true;
  e->failCode = code;
  e->failMessage = message;
}

std::vector<std::unique_ptr<Batch>> EngineBase::takeCompleted() {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<std::unique_ptr<Batch>> out;
  out.swap(completed_);
  return out;
}

std::vector<uint32_t> EngineBase::takeReady() {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<uint32_t> out;
  out.reserve(ready_.size());
  for (uint32_t id : ready_) {
    auto it = streams_.find(id);
    if (it != streams_.end() && it->second && !it->second->closed) out.push_back(id);
  }
  ready_.clear();
  return out;
}

void EngineBase::streamReady(uint32_t id) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stop_) return;
    ready_.push_back(id);
  }
  notify_();
}

bool EngineBase::injectFault(uint32_t id, Fault fault) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = streams_.find(id);
  if (it == streams_.end() || !it->second || it->second->closed) return false;
  Entry* e = it->second.get();
  switch (fault) {
    case Fault::kFail: ++e->faultFail; break;
    case Fault::kThrow: ++e->faultThrow; break;
    case Fault::kBadAlloc: ++e->faultBadAlloc; break;
  }
  return true;
}

EngineStats EngineBase::stats() const {
  const RecognizerStats r = recognizer_->stats();  // not under mu_: the recognizer has its own locks
  std::lock_guard<std::mutex> lk(mu_);
  EngineStats s = stats_;
  s.streams = 0;
  for (const auto& kv : streams_)
    if (kv.second && !kv.second->closed) ++s.streams;
  s.decoders = r.decoders;
  s.decodersInUse = r.decodersInUse;
  s.streamsWaiting = r.streamsWaiting;
  s.decoderWaits = r.decoderWaits;
  s.decoderWaitMsTotal = r.decoderWaitMsTotal;
  s.samplesDecoded = r.samplesDecoded;
  s.modelBytes = r.modelBytes;
  return s;
}

void EngineBase::shutdown() {
  std::lock_guard<std::mutex> lc(lifecycleMu_);
  if (shutDown_) return;
  bool wake = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    stopping_.store(true);
    for (auto& kv : streams_) {
      Entry* e = kv.second.get();
      if (!e) continue;
      while (!e->queue.empty()) {
        auto [b, i] = e->queue.front();
        e->queue.pop_front();
        --stats_.queuedWindows;
        b->out[i].stream = e->id;
        b->out[i].error = ErrorCode::kShutdown;
        b->out[i].errorMessage = "engine shut down before this window ran";
        wake |= completeWindow(b);
      }
      e->queued = false;
    }
    runQueue_.clear();
    cv_.notify_all();
  }
  if (wake) notify_();
  // Running windows finish and complete normally; then the workers return.
  for (auto& t : workers_) t.join();
  workers_.clear();
  // Every stream left (open, or closed with its cleanup not yet run) is
  // closed here, on this thread: the workers are gone.
  std::unordered_map<uint32_t, std::unique_ptr<Entry>> left;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto it = streams_.begin(); it != streams_.end();) {
      if (it->second) {  // null: openStream() is making its state, and closes it itself
        left.emplace(it->first, std::move(it->second));
        it = streams_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& kv : left) recognizer_->closeStream(*kv.second->state, kv.first);
  left.clear();
  {
    std::unique_lock<std::mutex> lk(mu_);
    created_.wait(lk, [this] { return creating_ == 0; });
  }
  recognizer_->release();
  shutDown_ = true;
}

void EngineBase::workerMain() {
  // Recognizer exceptions are caught per decode call inside workerLoop();
  // what could still arrive here is an allocation failure of the loop's own
  // bookkeeping. Nothing may escape a thread (std::terminate): say so and
  // stop this worker.
  try {
    workerLoop();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "captiongate: engine worker stopped: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "captiongate: engine worker stopped: unknown exception\n");
  }
}

void EngineBase::workerLoop() {
  const size_t maxPer = recognizer_->maxStreamsPerDecode();
  std::vector<Entry*> closing;
  std::vector<Entry*> jobEntries;
  std::vector<std::pair<Batch*, size_t>> jobWindows;
  std::vector<DecodeJob> jobs;
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    cv_.wait(lk, [this] { return stop_ || !runQueue_.empty(); });
    if (stop_) return;  // shutdown() completed the queued windows and closes the streams

    closing.clear();
    jobEntries.clear();
    jobWindows.clear();
    jobs.clear();
    bool wake = false;
    bool injectThrow = false;
    bool injectBadAlloc = false;
    // This worker's share of what is ready (ready streams over idle workers, itself included).
    const size_t idle = idleWorkers_ > 0 ? idleWorkers_ : 1;
    const size_t limit = maxPer > 0 ? maxPer : (runQueue_.size() + idle - 1) / idle;
    while (!runQueue_.empty() && jobs.size() < limit) {
      Entry* e = runQueue_.front();
      runQueue_.pop_front();
      e->queued = false;
      if (e->closed) {
        e->running = true;
        closing.push_back(e);
        continue;
      }
      if (e->queue.empty()) continue;
      auto [b, i] = e->queue.front();
      e->queue.pop_front();
      --stats_.queuedWindows;
      const WindowIn& in = b->in[i];
      WindowOut& out = b->out[i];
      out.stream = e->id;
      if (e->failed) {
        out.error = e->failCode;
        out.errorMessage = e->failMessage;
      } else if (e->faultFail > 0) {
        --e->faultFail;
        out.error = ErrorCode::kDecodeFailed;
        out.errorMessage = "decoder failed on this window (injected fault)";
      } else if (in.start != e->position) {
        out.error = ErrorCode::kBadWindow;
        out.errorMessage = "window starts at sample " + std::to_string(in.start) + " but stream " +
                           std::to_string(e->id) + " has consumed " + std::to_string(e->position);
      }
      if (out.error != ErrorCode::kNone) {
        // Completed without the recognizer; the stream fails (if it had not).
        fail(e, out.error, out.errorMessage);
        ++stats_.windowsProcessed;
        wake |= completeWindow(b);
        schedule(e);  // its next window fails the same way, in order
        continue;
      }
      e->running = true;
      if (e->faultThrow > 0) {
        --e->faultThrow;
        injectThrow = true;
      } else if (e->faultBadAlloc > 0) {
        --e->faultBadAlloc;
        injectBadAlloc = true;
      }
      jobs.push_back(DecodeJob{*e->state, e->id, in, out});
      jobEntries.push_back(e);
      jobWindows.emplace_back(b, i);
    }
    --idleWorkers_;
    // What is left over is another idle worker's share.
    if (!runQueue_.empty() && idleWorkers_ > 0) cv_.notify_one();
    lk.unlock();
    if (wake) notify_();
    wake = false;

    for (Entry* e : closing) recognizer_->closeStream(*e->state, e->id);

    double busyMs = 0;
    if (!jobs.empty()) {
      const auto t0 = Clock::now();
      std::string failure;
      try {
        if (injectThrow) throw std::runtime_error("injected fault (std::runtime_error thrown inside the worker)");
        if (injectBadAlloc) throw std::bad_alloc();
        recognizer_->decode(jobs);
      } catch (const std::exception& ex) {
        failure = std::string("decoding failed: ") + ex.what();
      } catch (...) {
        failure = "decoding failed: unknown exception";
      }
      if (failure.empty()) {
        // The position invariant rests on `consumed`: hold recognizers to it.
        for (const DecodeJob& j : jobs) {
          const size_t n = j.in.pcm.size();
          if (j.out.error != ErrorCode::kNone) continue;
          if (j.out.consumed > n || (!j.out.waiting && j.out.consumed != n)) {
            j.out.error = ErrorCode::kDecodeFailed;
            j.out.errorMessage = "recognizer consumed " + std::to_string(j.out.consumed) + " of " + std::to_string(n) +
                                 " samples" + (j.out.waiting ? "" : " without parking");
          }
          if (j.out.waiting) j.out.flushed = false;
        }
      } else {
        for (const DecodeJob& j : jobs) {
          j.out = WindowOut{};
          j.out.stream = j.stream;
          j.out.error = ErrorCode::kDecodeFailed;
          j.out.errorMessage = failure;
        }
      }
      busyMs = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    }

    lk.lock();
    ++idleWorkers_;
    for (Entry* e : closing) streams_.erase(e->id);  // destroys its state
    stats_.busyMs += busyMs;
    for (size_t k = 0; k < jobs.size(); ++k) {
      Entry* e = jobEntries[k];
      const WindowOut& out = jobs[k].out;
      if (out.error == ErrorCode::kNone) {
        e->position += out.consumed;
        stats_.samplesProcessed += out.consumed;
      } else {
        fail(e, out.error, out.errorMessage);
      }
      ++stats_.windowsProcessed;
      wake |= completeWindow(jobWindows[k].first);
      e->running = false;
      schedule(e);
    }
    if (wake) {
      lk.unlock();
      notify_();
      lk.lock();
    }
  }
}

}  // namespace captiongate
