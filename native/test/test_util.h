// Test helpers: a host that drains the engine the way the N-API layer does
// (Notify only signals; the waiting thread takes), a scriptable recognizer
// that checks the base's promises to recognizers, and a WAV reader.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "base/engine_base.h"

namespace captiongate::test {

using namespace std::chrono_literals;

// Owns an EngineBase and collects what it delivers. Thread-safe: several
// submitter threads may wait for their own batches at once.
class Harness {
 public:
  explicit Harness(std::unique_ptr<Recognizer> r)
      : engine_(std::make_unique<EngineBase>(std::move(r), [this] { notified(); })) {}
  ~Harness() { engine_.reset(); }  // before the members Notify uses

  EngineBase& engine() { return *engine_; }

  // Submits and returns the batch id; fails the test if refused.
  uint64_t submit(std::vector<WindowIn> windows) {
    auto b = std::make_unique<Batch>();
    b->id = nextBatch_.fetch_add(1);
    b->in = std::move(windows);
    const uint64_t id = b->id;
    std::string err;
    const ErrorCode c = engine_->submit(b, &err);
    if (c != ErrorCode::kNone) throw std::runtime_error("submit refused: " + err);
    return id;
  }

  // Submission that may be refused: returns the code.
  ErrorCode trySubmit(std::vector<WindowIn> windows, std::string* err) {
    auto b = std::make_unique<Batch>();
    b->id = nextBatch_.fetch_add(1);
    b->in = std::move(windows);
    return engine_->submit(b, err);
  }

  // Waits for a batch's results (up to `timeout`); fails the test on timeout.
  std::unique_ptr<Batch> wait(uint64_t id, std::chrono::milliseconds timeout = 60s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      collect();
      auto it = done_.find(id);
      if (it != done_.end()) {
        auto b = std::move(it->second);
        done_.erase(it);
        return b;
      }
      const uint64_t seen = generation_;
      if (!cv_.wait_until(lk, deadline, [&] { return generation_ != seen; })) {
        collect();
        it = done_.find(id);
        if (it != done_.end()) {
          auto b = std::move(it->second);
          done_.erase(it);
          return b;
        }
        ADD_FAILURE() << "batch " << id << " did not complete in time";
        return nullptr;
      }
    }
  }

  std::vector<WindowOut> run(std::vector<WindowIn> windows) {
    auto b = wait(submit(std::move(windows)));
    return b ? b->out : std::vector<WindowOut>{};
  }

  // Waits until the stream was named by Host::streamReady (and consumes that).
  bool waitReady(uint32_t stream, std::chrono::milliseconds timeout = 60s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      collect();
      auto it = ready_.find(stream);
      if (it != ready_.end()) {
        ready_.erase(it);
        return true;
      }
      const uint64_t seen = generation_;
      if (!cv_.wait_until(lk, deadline, [&] { return generation_ != seen; })) return false;
    }
  }

  int notifications() const { return notifications_.load(); }

 private:
  void notified() {
    notifications_.fetch_add(1);
    std::lock_guard<std::mutex> lk(mu_);
    ++generation_;
    cv_.notify_all();
  }
  void collect() {  // under mu_
    for (auto& b : engine_->takeCompleted()) done_[b->id] = std::move(b);
    for (uint32_t id : engine_->takeReady()) ready_.insert(id);
  }

  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t generation_ = 0;
  std::map<uint64_t, std::unique_ptr<Batch>> done_;
  std::multiset<uint32_t> ready_;
  std::atomic<uint64_t> nextBatch_{1};
  std::atomic<int> notifications_{0};
  std::unique_ptr<EngineBase> engine_;
};

inline WindowIn window(uint32_t stream, int64_t start, size_t n, bool flush = false, int16_t value = 0) {
  WindowIn w;
  w.stream = stream;
  w.start = start;
  w.pcm.assign(n, value);
  w.flush = flush;
  return w;
}

// A recognizer that consumes whole windows (like the null one) and checks,
// from inside, what the base promises: distinct streams per call, no stream
// in two calls at once, windows in order (each starts where the last ended),
// closeStream exactly once and never while the stream decodes. A hook runs
// inside every decode() (sleep, throw, misbehave).
class CheckingRecognizer : public Recognizer {
 public:
  struct Options {
    int workers = 2;
    size_t maxPerDecode = 0;
    std::chrono::milliseconds loadTime{0};
    std::chrono::microseconds createTime{0};  // createStream() takes this long
  };
  using Hook = std::function<void(const std::vector<DecodeJob>&)>;

  explicit CheckingRecognizer(Options o) : o_(o) {}
  ~CheckingRecognizer() override {
    std::lock_guard<std::mutex> lk(mu_);
    EXPECT_EQ(created_, closed_.size()) << "every created stream is closed exactly once";
  }

  void setHook(Hook h) {
    std::lock_guard<std::mutex> lk(mu_);
    hook_ = std::move(h);
  }

  void load(RecognizerHost& host) override {
    if (o_.loadTime.count()) std::this_thread::sleep_for(o_.loadTime);
    std::lock_guard<std::mutex> lk(mu_);
    host_ = &host;
    loaded_ = true;
  }
  int workers() const override { return o_.workers; }
  size_t maxStreamsPerDecode() const override { return o_.maxPerDecode; }

  struct State : RecognizerStream {
    explicit State(uint32_t i) : id(i) {}
    const uint32_t id;
    int64_t next = 0;  // where the next window must start
    std::vector<int64_t> starts;
  };

  std::unique_ptr<RecognizerStream> createStream(uint32_t stream, const StreamOptions&) override {
    if (o_.createTime.count()) std::this_thread::sleep_for(o_.createTime);
    std::lock_guard<std::mutex> lk(mu_);
    EXPECT_TRUE(loaded_);
    EXPECT_EQ(releases_, 0) << "createStream after release";
    ++created_;
    return std::make_unique<State>(stream);
  }

  void decode(const std::vector<DecodeJob>& jobs) override {
    Hook hook;
    {
      std::lock_guard<std::mutex> lk(mu_);
      ++calls_;
      maxJobs_ = std::max(maxJobs_, jobs.size());
      if (o_.maxPerDecode) {
        EXPECT_LE(jobs.size(), o_.maxPerDecode);
      }
      std::set<uint32_t> inCall;
      for (const auto& j : jobs) {
        EXPECT_TRUE(inCall.insert(j.stream).second) << "stream " << j.stream << " twice in one call";
        EXPECT_TRUE(running_.insert(j.stream).second) << "stream " << j.stream << " in two calls at once";
        EXPECT_FALSE(closed_.count(j.stream)) << "decode after closeStream";
        EXPECT_EQ(releases_, 0) << "decode after release";
        EXPECT_EQ(static_cast<State&>(j.state).id, j.stream);
      }
      concurrent_ = std::max(concurrent_, ++active_);
      hook = hook_;
    }
    struct Leave {
      CheckingRecognizer* self;
      const std::vector<DecodeJob>& jobs;
      ~Leave() {
        std::lock_guard<std::mutex> lk(self->mu_);
        --self->active_;
        for (const auto& j : jobs) self->running_.erase(j.stream);
      }
    } leave{this, jobs};
    for (const auto& j : jobs) {
      auto& s = static_cast<State&>(j.state);
      EXPECT_EQ(j.in.start, s.next) << "stream " << j.stream << " out of order";
      s.starts.push_back(j.in.start);
      j.out.consumed = static_cast<uint32_t>(j.in.pcm.size());
      j.out.flushed = j.in.flush;
    }
    if (hook) hook(jobs);
    for (const auto& j : jobs) {
      auto& s = static_cast<State&>(j.state);
      if (j.out.error == ErrorCode::kNone) s.next += j.out.consumed;
    }
  }

  void closeStream(RecognizerStream& state, uint32_t stream) noexcept override {
    std::lock_guard<std::mutex> lk(mu_);
    EXPECT_EQ(static_cast<State&>(state).id, stream);
    EXPECT_FALSE(running_.count(stream)) << "closeStream while the stream decodes";
    EXPECT_TRUE(closed_.insert(stream).second) << "closeStream twice for " << stream;
    EXPECT_EQ(releases_, 0) << "closeStream after release";
  }

  RecognizerStats stats() const override { return {}; }

  void release() noexcept override {
    std::lock_guard<std::mutex> lk(mu_);
    EXPECT_EQ(active_, 0) << "release while a decode runs";
    EXPECT_EQ(created_, closed_.size()) << "release before every stream is closed";
    ++releases_;
  }
  int releases() {
    std::lock_guard<std::mutex> lk(mu_);
    return releases_;
  }

  RecognizerHost* host() {
    std::lock_guard<std::mutex> lk(mu_);
    return host_;
  }
  int calls() {
    std::lock_guard<std::mutex> lk(mu_);
    return calls_;
  }
  size_t maxJobs() {
    std::lock_guard<std::mutex> lk(mu_);
    return maxJobs_;
  }
  int maxConcurrent() {
    std::lock_guard<std::mutex> lk(mu_);
    return concurrent_;
  }
  bool closed(uint32_t id) {
    std::lock_guard<std::mutex> lk(mu_);
    return closed_.count(id) > 0;
  }
  size_t closedCount() {
    std::lock_guard<std::mutex> lk(mu_);
    return closed_.size();
  }

 private:
  const Options o_;
  std::mutex mu_;
  Hook hook_;
  RecognizerHost* host_ = nullptr;
  bool loaded_ = false;
  size_t created_ = 0;
  int releases_ = 0;
  std::set<uint32_t> closed_;
  std::set<uint32_t> running_;
  int calls_ = 0;
  size_t maxJobs_ = 0;
  int active_ = 0;
  int concurrent_ = 0;
};

// 16-bit mono PCM from a RIFF/WAVE file (the LibriVox test clips).
inline std::vector<int16_t> readWav(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path);
  std::vector<char> d;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) d.insert(d.end(), buf, buf + n);
  std::fclose(f);
  if (d.size() < 12 || std::memcmp(d.data(), "RIFF", 4) || std::memcmp(d.data() + 8, "WAVE", 4))
    throw std::runtime_error(path + ": not a WAVE file");
  size_t p = 12;
  while (p + 8 <= d.size()) {
    uint32_t len;
    std::memcpy(&len, d.data() + p + 4, 4);
    if (!std::memcmp(d.data() + p, "data", 4)) {
      const size_t bytes = std::min<size_t>(len, d.size() - p - 8) / 2 * 2;
      std::vector<int16_t> pcm(bytes / 2);
      std::memcpy(pcm.data(), d.data() + p + 8, bytes);
      return pcm;
    }
    p += 8 + len + (len & 1);
  }
  throw std::runtime_error(path + ": no data chunk");
}

}  // namespace captiongate::test
