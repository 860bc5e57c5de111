// The engine base against the contract, with recognizers that decode
// nothing (null) or check the base from inside (CheckingRecognizer).
#include <random>

#include "base/null_recognizer.h"
#include "test_util.h"

namespace captiongate::test {
namespace {

struct Checked {
  CheckingRecognizer* rec;
  std::unique_ptr<Harness> h;
};

Checked makeChecked(CheckingRecognizer::Options o, bool load = true) {
  auto r = std::make_unique<CheckingRecognizer>(o);
  CheckingRecognizer* raw = r.get();
  auto h = std::make_unique<Harness>(std::move(r));
  if (load) h->engine().load();
  return {raw, std::move(h)};
}

TEST(Base, NullRecognizerConsumesEveryWindowAndFlushes) {
  Harness h(std::make_unique<NullRecognizer>());
  h.engine().load();
  const uint32_t a = h.engine().openStream();
  auto out = h.run({window(a, 0, 1600), window(a, 1600, 800, true)});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].error, ErrorCode::kNone);
  EXPECT_EQ(out[0].consumed, 1600u);
  EXPECT_FALSE(out[0].flushed);
  EXPECT_EQ(out[1].consumed, 800u);
  EXPECT_TRUE(out[1].flushed);
  EXPECT_FALSE(out[1].waiting);
  EngineStats s = h.engine().stats();
  EXPECT_EQ(s.windowsProcessed, 2u);
  EXPECT_EQ(s.samplesProcessed, 2400u);
  EXPECT_EQ(s.streams, 1);
  EXPECT_EQ(s.queuedWindows, 0u);
  EXPECT_TRUE(h.engine().closeStream(a));
  EXPECT_FALSE(h.engine().closeStream(a));
}

TEST(Base, EmptyBatchCompletesAtOnce) {
  Harness h(std::make_unique<NullRecognizer>());
  h.engine().load();
  EXPECT_TRUE(h.run({}).empty());
}

TEST(Base, RefusesUseBeforeLoadUnknownStreamsAndDoubleLoad) {
  auto c = makeChecked({}, false);
  EXPECT_THROW(c.h->engine().openStream(), std::runtime_error);
  c.h->engine().load();
  EXPECT_THROW(c.h->engine().load(), std::runtime_error);
  std::string err;
  EXPECT_EQ(c.h->trySubmit({window(12345, 0, 10)}, &err), ErrorCode::kStreamClosed);
  EXPECT_NE(err.find("12345"), std::string::npos);
  EXPECT_FALSE(c.h->engine().closeStream(12345));
  EXPECT_FALSE(c.h->engine().injectFault(12345, EngineBase::Fault::kFail));
}

// Many streams, submitted from several threads, each stream's windows
// pipelined several batches deep: order per stream, distinct streams per
// call and no concurrent decode of a stream are checked inside the
// recognizer; here every result must be clean and every sample counted.
TEST(Base, ManyStreamsFromManyThreadsKeepOrderPerStream) {
  auto c = makeChecked({3, 4});
  c.rec->setHook([](const std::vector<DecodeJob>&) { std::this_thread::sleep_for(std::chrono::microseconds(200)); });
  constexpr int kThreads = 4, kStreamsPerThread = 6, kRounds = 40;
  std::atomic<uint64_t> samples{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t + 1);
      std::vector<uint32_t> ids;
      std::vector<int64_t> pos(kStreamsPerThread, 0);
      for (int s = 0; s < kStreamsPerThread; ++s) ids.push_back(c.h->engine().openStream());
      std::vector<uint64_t> pendingIds;
      std::vector<std::vector<size_t>> pendingSizes;
      for (int r = 0; r < kRounds; ++r) {
        std::vector<WindowIn> ws;
        std::vector<size_t> sizes;
        for (int s = 0; s < kStreamsPerThread; ++s) {
          const size_t n = 1 + rng() % 3200;
          ws.push_back(window(ids[s], pos[s], n, r == kRounds - 1));
          pos[s] += static_cast<int64_t>(n);
          sizes.push_back(n);
          samples += n;
        }
        pendingIds.push_back(c.h->submit(std::move(ws)));
        pendingSizes.push_back(sizes);
        if (pendingIds.size() == 4 || r == kRounds - 1) {  // 4 batches in flight per thread
          for (size_t k = 0; k < pendingIds.size(); ++k) {
            auto b = c.h->wait(pendingIds[k]);
            ASSERT_TRUE(b);
            for (size_t i = 0; i < b->out.size(); ++i) {
              EXPECT_EQ(b->out[i].error, ErrorCode::kNone) << b->out[i].errorMessage;
              EXPECT_EQ(b->out[i].consumed, pendingSizes[k][i]);
              EXPECT_EQ(b->out[i].stream, ids[i]);
            }
          }
          pendingIds.clear();
          pendingSizes.clear();
        }
      }
      for (uint32_t id : ids) EXPECT_TRUE(c.h->engine().closeStream(id));
    });
  }
  for (auto& t : threads) t.join();
  const EngineStats s = c.h->engine().stats();
  EXPECT_EQ(s.windowsProcessed, static_cast<uint64_t>(kThreads * kStreamsPerThread * kRounds));
  EXPECT_EQ(s.samplesProcessed, samples.load());
  EXPECT_EQ(s.queuedWindows, 0u);
  EXPECT_GT(c.rec->maxJobs(), 1u) << "a worker took several streams into one call";
  EXPECT_GE(c.rec->maxConcurrent(), 2) << "workers decoded in parallel";
  c.h->engine().shutdown();
  EXPECT_EQ(c.rec->closedCount(), static_cast<size_t>(kThreads * kStreamsPerThread));
}

TEST(Base, UnlimitedStreamsPerDecodeTakesEveryReadyStream) {
  auto c = makeChecked({1, 0});
  std::atomic<bool> release{false};
  c.rec->setHook([&](const std::vector<DecodeJob>&) {
    while (!release.load()) std::this_thread::sleep_for(1ms);
  });
  std::vector<uint32_t> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(c.h->engine().openStream());
  const uint64_t first = c.h->submit({window(ids[0], 0, 10)});  // blocks the one worker
  std::this_thread::sleep_for(20ms);
  std::vector<WindowIn> rest;
  for (int i = 1; i < 10; ++i) rest.push_back(window(ids[i], 0, 10));
  const uint64_t second = c.h->submit(std::move(rest));
  release = true;
  ASSERT_TRUE(c.h->wait(first));
  ASSERT_TRUE(c.h->wait(second));
  EXPECT_EQ(c.rec->maxJobs(), 9u) << "the second call held all nine waiting streams";
}

TEST(Base, UnlimitedStreamsPerDecodeSharesReadyStreamsAmongIdleWorkers) {
  auto c = makeChecked({2, 0});
  std::atomic<int> running{0};
  std::atomic<int> most{0};
  c.rec->setHook([&](const std::vector<DecodeJob>&) {
    const int now = ++running;
    int seen = most.load();
    while (now > seen && !most.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(50ms);
    --running;
  });
  std::vector<WindowIn> all;
  for (int i = 0; i < 10; ++i) all.push_back(window(c.h->engine().openStream(), 0, 10));
  ASSERT_TRUE(c.h->wait(c.h->submit(std::move(all))));
  EXPECT_EQ(most.load(), 2) << "both idle workers decoded at once";
  EXPECT_LE(c.rec->maxJobs(), 5u) << "each took its share (10 ready streams, 2 idle workers)";
}

TEST(Base, CloseWithWindowsQueuedCompletesThemAndClosesOnceAfterTheRunningOne) {
  auto c = makeChecked({1, 1});
  c.rec->setHook([](const std::vector<DecodeJob>&) { std::this_thread::sleep_for(10ms); });
  const uint32_t a = c.h->engine().openStream();
  const uint32_t b = c.h->engine().openStream();
  std::vector<uint64_t> batches;
  for (int i = 0; i < 10; ++i) batches.push_back(c.h->submit({window(a, i * 100, 100), window(b, i * 100, 100)}));
  std::this_thread::sleep_for(15ms);
  EXPECT_TRUE(c.h->engine().closeStream(a));
  int ran = 0, closed = 0;
  for (uint64_t id : batches) {
    auto batch = c.h->wait(id);
    ASSERT_TRUE(batch);
    const WindowOut& oa = batch->out[0];
    EXPECT_EQ(oa.stream, a);
    if (oa.error == ErrorCode::kNone) {
      ++ran;
      EXPECT_EQ(closed, 0) << "a window ran after one was refused";
    } else {
      EXPECT_EQ(oa.error, ErrorCode::kStreamClosed);
      ++closed;
    }
    EXPECT_EQ(batch->out[1].error, ErrorCode::kNone) << "stream b is not affected";
  }
  EXPECT_GE(ran, 1);
  EXPECT_GE(closed, 1);
  for (int i = 0; i < 200 && !c.rec->closed(a); ++i) std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(c.rec->closed(a));
  EXPECT_FALSE(c.rec->closed(b));
  std::string err;
  EXPECT_EQ(c.h->trySubmit({window(a, 0, 10)}, &err), ErrorCode::kStreamClosed);
  EXPECT_EQ(c.h->engine().stats().streams, 1);
}

TEST(Base, ShutdownWithWorkInFlightTwiceConcurrently) {
  auto c = makeChecked({2, 1});
  c.rec->setHook([](const std::vector<DecodeJob>&) { std::this_thread::sleep_for(5ms); });
  std::vector<uint32_t> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(c.h->engine().openStream());
  std::vector<uint64_t> batches;
  for (int r = 0; r < 20; ++r) {
    std::vector<WindowIn> ws;
    for (uint32_t id : ids) ws.push_back(window(id, r * 160, 160));
    batches.push_back(c.h->submit(std::move(ws)));
  }
  std::this_thread::sleep_for(12ms);
  std::thread t1([&] { c.h->engine().shutdown(); });
  std::thread t2([&] { c.h->engine().shutdown(); });
  c.h->engine().shutdown();
  t1.join();
  t2.join();
  EXPECT_TRUE(c.h->engine().isShutdown());
  int ok = 0, shut = 0;
  for (uint64_t id : batches) {
    auto b = c.h->wait(id, 5s);
    ASSERT_TRUE(b);
    for (const auto& o : b->out) {
      if (o.error == ErrorCode::kNone) {
        ++ok;
      } else {
        EXPECT_EQ(o.error, ErrorCode::kShutdown) << o.errorMessage;
        ++shut;
      }
    }
  }
  EXPECT_GT(ok, 0);
  EXPECT_GT(shut, 0);
  EXPECT_EQ(c.rec->closedCount(), ids.size()) << "every stream closed once, on the shutting-down thread";
  EXPECT_EQ(c.rec->releases(), 1) << "the model released once, after the streams";
  std::string err;
  EXPECT_EQ(c.h->trySubmit({window(ids[0], 0, 10)}, &err), ErrorCode::kShutdown);
  EXPECT_THROW(c.h->engine().openStream(), std::runtime_error);
  EXPECT_THROW(c.h->engine().load(), std::runtime_error);
  EXPECT_FALSE(c.h->engine().closeStream(ids[0]));
  c.h->engine().shutdown();  // idempotent
  EXPECT_EQ(c.h->engine().stats().queuedWindows, 0u);
  EXPECT_EQ(c.rec->releases(), 1);
}

// The recognizer frees its model at shutdown, so no createStream() may still
// run then: streams being made while it shuts down are closed first (the
// recognizer's checks fail on any call after release()).
TEST(Base, StreamsOpeningWhileItShutsDownAreClosedBeforeTheRelease) {
  for (int round = 0; round < 20; ++round) {
    CheckingRecognizer::Options o;
    o.createTime = 300us;
    auto c = makeChecked(o);
    std::atomic<int> opened{0};
    std::vector<std::thread> ts;
    for (int i = 0; i < 4; ++i)
      ts.emplace_back([&] {
        for (int k = 0; k < 100; ++k) {
          try {
            c.h->engine().openStream();
            ++opened;
          } catch (const std::runtime_error&) {
            return;
          }
        }
      });
    std::this_thread::sleep_for(std::chrono::microseconds(200 * (round % 5)));
    c.h->engine().shutdown();
    for (auto& t : ts) t.join();
    EXPECT_EQ(c.rec->releases(), 1);
    EXPECT_GE(c.rec->closedCount(), static_cast<size_t>(opened.load()));
  }
}

TEST(Base, ShutdownThatArrivesDuringLoadWaitsForIt) {
  CheckingRecognizer::Options o;
  o.loadTime = 150ms;
  auto c = makeChecked(o, false);
  std::atomic<bool> loaded{false};
  std::thread loader([&] {
    c.h->engine().load();
    loaded = true;
  });
  std::this_thread::sleep_for(30ms);
  c.h->engine().shutdown();
  EXPECT_TRUE(loaded.load()) << "shutdown returned before the load it raced had finished";
  loader.join();
  EXPECT_THROW(c.h->engine().openStream(), std::runtime_error);
}

TEST(Base, LoadAfterShutdownFails) {
  auto c = makeChecked({}, false);
  c.h->engine().shutdown();
  EXPECT_THROW(c.h->engine().load(), std::runtime_error);
}

TEST(Base, LoadRacingShutdownFromManyThreads) {
  for (int round = 0; round < 20; ++round) {
    CheckingRecognizer::Options o;
    o.loadTime = std::chrono::milliseconds(round % 3);
    auto c = makeChecked(o, false);
    std::atomic<int> loads{0}, refused{0};
    std::vector<std::thread> ts;
    ts.emplace_back([&] {
      try {
        c.h->engine().load();
        ++loads;
      } catch (const std::exception&) {
        ++refused;
      }
    });
    for (int i = 0; i < 2; ++i) ts.emplace_back([&] { c.h->engine().shutdown(); });
    ts.emplace_back([&] {
      try {
        const uint32_t id = c.h->engine().openStream();
        std::string err;
        c.h->trySubmit({window(id, 0, 10)}, &err);
      } catch (const std::exception&) {
      }
    });
    for (auto& t : ts) t.join();
    EXPECT_EQ(loads + refused, 1);
    EXPECT_TRUE(c.h->engine().isShutdown());
  }
}

TEST(Base, InjectedFailFailsTheStreamWithoutReachingTheRecognizer) {
  auto c = makeChecked({1, 0});
  const uint32_t a = c.h->engine().openStream();
  const uint32_t b = c.h->engine().openStream();
  ASSERT_TRUE(c.h->engine().injectFault(a, EngineBase::Fault::kFail));
  auto out = c.h->run({window(a, 0, 100), window(b, 0, 100)});
  EXPECT_EQ(out[0].error, ErrorCode::kDecodeFailed);
  EXPECT_NE(out[0].errorMessage.find("injected fault"), std::string::npos);
  EXPECT_EQ(out[1].error, ErrorCode::kNone);
  // The stream is failed: its next window fails fast with the same code.
  out = c.h->run({window(a, 0, 100), window(b, 100, 100)});
  EXPECT_EQ(out[0].error, ErrorCode::kDecodeFailed);
  EXPECT_EQ(out[1].error, ErrorCode::kNone);
  EXPECT_TRUE(c.h->engine().closeStream(a));
  for (int i = 0; i < 200 && !c.rec->closed(a); ++i) std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(c.rec->closed(a)) << "a failed stream is still closed in the recognizer";
}

class ThrowKinds : public ::testing::TestWithParam<EngineBase::Fault> {};

TEST_P(ThrowKinds, InjectedThrowFailsEveryJobOfThatCall) {
  auto c = makeChecked({1, 0});
  std::atomic<bool> release{false};
  c.rec->setHook([&](const std::vector<DecodeJob>& jobs) {
    while (!release.load()) std::this_thread::sleep_for(1ms);
  });
  const uint32_t blocker = c.h->engine().openStream();
  const uint32_t a = c.h->engine().openStream();
  const uint32_t b = c.h->engine().openStream();
  const uint32_t other = c.h->engine().openStream();
  const uint64_t first = c.h->submit({window(blocker, 0, 10)});
  std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(c.h->engine().injectFault(a, GetParam()));
  const uint64_t second = c.h->submit({window(a, 0, 10), window(b, 0, 10)});  // one call: a and b
  release = true;
  ASSERT_TRUE(c.h->wait(first));
  auto out = c.h->wait(second)->out;
  const char* what = GetParam() == EngineBase::Fault::kBadAlloc ? "bad_alloc" : "injected fault";
  for (const auto& o : out) {
    EXPECT_EQ(o.error, ErrorCode::kDecodeFailed);
    EXPECT_NE(o.errorMessage.find(what), std::string::npos) << o.errorMessage;
    EXPECT_EQ(o.consumed, 0u);
  }
  // Streams of that call are failed; a stream outside it is not.
  out = c.h->run({window(a, 0, 10), window(b, 0, 10), window(other, 0, 10)});
  EXPECT_EQ(out[0].error, ErrorCode::kDecodeFailed);
  EXPECT_EQ(out[1].error, ErrorCode::kDecodeFailed);
  EXPECT_EQ(out[2].error, ErrorCode::kNone);
}

INSTANTIATE_TEST_SUITE_P(Base, ThrowKinds, ::testing::Values(EngineBase::Fault::kThrow, EngineBase::Fault::kBadAlloc));

TEST(Base, RecognizerExceptionsAreCaughtInTheWorker) {
  auto c = makeChecked({2, 1});
  std::atomic<int> mode{0};
  c.rec->setHook([&](const std::vector<DecodeJob>&) {
    switch (mode.load()) {
      case 1: throw std::runtime_error("model exploded");
      case 2: throw std::bad_alloc();
      case 3: throw 42;  // not even a std::exception
      default: break;
    }
  });
  const char* expected[] = {"", "decoding failed: model exploded", "decoding failed: std::bad_alloc",
                            "decoding failed: unknown exception"};
  for (int m = 1; m <= 3; ++m) {
    mode = m;
    const uint32_t id = c.h->engine().openStream();
    auto out = c.h->run({window(id, 0, 10)});
    EXPECT_EQ(out[0].error, ErrorCode::kDecodeFailed);
    EXPECT_EQ(out[0].errorMessage, expected[m]);
    c.h->engine().closeStream(id);
  }
  mode = 0;
  const uint32_t id = c.h->engine().openStream();
  EXPECT_EQ(c.h->run({window(id, 0, 10)})[0].error, ErrorCode::kNone) << "the workers survived";
}

TEST(Base, BadWindowNeverReachesTheRecognizerAndFailsTheStream) {
  auto c = makeChecked({1, 0});
  const uint32_t a = c.h->engine().openStream();
  EXPECT_EQ(c.h->run({window(a, 0, 100)})[0].error, ErrorCode::kNone);
  for (int64_t start : {int64_t{0}, int64_t{50}, int64_t{101}}) {
    const uint32_t s = c.h->engine().openStream();
    c.h->run({window(s, 0, 100)});
    auto out = c.h->run({window(s, start, 100)});
    EXPECT_EQ(out[0].error, ErrorCode::kBadWindow) << "start " << start;
    EXPECT_NE(out[0].errorMessage.find("has consumed 100"), std::string::npos) << out[0].errorMessage;
    // Even the right start fails now: the stream failed with kBadWindow.
    EXPECT_EQ(c.h->run({window(s, 100, 100)})[0].error, ErrorCode::kBadWindow);
  }
  EXPECT_EQ(c.h->run({window(a, 100, 100)})[0].error, ErrorCode::kNone);
}

TEST(Base, RecognizerThatBreaksConsumedIsCaught) {
  auto c = makeChecked({1, 0});
  c.rec->setHook([](const std::vector<DecodeJob>& jobs) {
    for (const auto& j : jobs) j.out.consumed = static_cast<uint32_t>(j.in.pcm.size() / 2);  // no park
  });
  const uint32_t a = c.h->engine().openStream();
  auto out = c.h->run({window(a, 0, 100)});
  EXPECT_EQ(out[0].error, ErrorCode::kDecodeFailed);
  EXPECT_NE(out[0].errorMessage.find("without parking"), std::string::npos);
}

TEST(Base, ParkedStreamsResumeAfterStreamReady) {
  // A recognizer that parks each stream's first window halfway and names it
  // ready from another thread later: the base only relays.
  auto c = makeChecked({2, 1});
  std::mutex mu;
  std::set<uint32_t> parkedOnce;
  std::vector<std::thread> later;
  c.rec->setHook([&](const std::vector<DecodeJob>& jobs) {
    for (const auto& j : jobs) {
      std::lock_guard<std::mutex> lk(mu);
      if (parkedOnce.insert(j.stream).second) {
        j.out.waiting = true;
        j.out.consumed = static_cast<uint32_t>(j.in.pcm.size() / 2);
        j.out.flushed = false;
        RecognizerHost* host = c.rec->host();
        const uint32_t id = j.stream;
        later.emplace_back([host, id] {
          std::this_thread::sleep_for(5ms);
          host->streamReady(id);
        });
      }
    }
  });
  std::vector<uint32_t> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(c.h->engine().openStream());
  std::vector<WindowIn> ws;
  for (uint32_t id : ids) ws.push_back(window(id, 0, 200, true));
  auto out = c.h->run(std::move(ws));
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_TRUE(out[i].waiting);
    EXPECT_FALSE(out[i].flushed) << "a parked window has not reached its flush";
    EXPECT_EQ(out[i].consumed, 100u);
    ASSERT_TRUE(c.h->waitReady(ids[i]));
    auto again = c.h->run({window(ids[i], 100, 100, true)});
    EXPECT_EQ(again[0].error, ErrorCode::kNone);
    EXPECT_TRUE(again[0].flushed);
  }
  {
    std::lock_guard<std::mutex> lk(mu);
    for (auto& t : later) t.join();
  }
  EXPECT_EQ(c.h->engine().stats().samplesProcessed, 1000u);
}

TEST(Base, ReadyForAClosedStreamIsDropped) {
  auto c = makeChecked({1, 0});
  const uint32_t a = c.h->engine().openStream();
  const uint32_t b = c.h->engine().openStream();
  c.h->engine().closeStream(a);
  c.rec->host()->streamReady(a);
  c.rec->host()->streamReady(b);
  EXPECT_TRUE(c.h->waitReady(b));
  EXPECT_FALSE(c.h->waitReady(a, 50ms));
}

}  // namespace
}  // namespace captiongate::test
