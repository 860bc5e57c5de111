// NativeEngine: the N-API face of EngineBase, whatever recognizer it runs.
//
// Lifetimes. Nothing captures a pointer that can outlive its object:
// - The engine is a shared_ptr held by the wrapper and by every AsyncWorker
//   running load() or shutdown() on a libuv thread, so the env cleanup hook
//   or the wrapper's finalizer never frees it under a running call; they
//   call the engine's serialized shutdown(), which waits for such a call.
// - Delivery is a shared_ptr captured by the engine's Notify (worker
//   threads) and by every ThreadSafeFunction call and AsyncWorker; it names
//   the wrapper only through `owner`, which the wrapper clears in its
//   destructor, and it stops using the TSFN once released.
// - While batches, load or shutdown are in flight the wrapper is referenced
//   (ObjectWrap::Ref), so it is not collected with promises pending.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "../base/engine_base.h"

namespace captiongate::napi {

class NativeEngine;

struct Delivery {
  std::mutex mu;  // guards the TSFN's use from worker threads against its release
  Napi::ThreadSafeFunction tsfn;
  bool open = false;                     // under mu (written on the JS thread only)
  std::atomic<bool> wakePending{false};  // coalesces wakeups
  NativeEngine* owner = nullptr;         // JS thread only; null once the wrapper is gone
};

class NativeEngine : public Napi::ObjectWrap<NativeEngine> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit NativeEngine(const Napi::CallbackInfo& info);
  ~NativeEngine() override;

  // JS thread: deliver completed batches and ready streams.
  void drain(Napi::Env env);
  void loadDone(Napi::Env env, bool ok);
  void shutdownDone(Napi::Env env);

 private:
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value OpenStream(const Napi::CallbackInfo& info);
  Napi::Value CloseStream(const Napi::CallbackInfo& info);
  Napi::Value Submit(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Shutdown(const Napi::CallbackInfo& info);
  Napi::Value InjectFault(const Napi::CallbackInfo& info);

  void hold(Napi::Env env);    // a batch, load or shutdown started
  void unhold(Napi::Env env);  // ... and ended
  void teardown();             // JS thread, at GC or env exit
  static void CleanupHook(void* arg);

  std::shared_ptr<EngineBase> engine_;
  std::shared_ptr<Delivery> delivery_;
  Napi::FunctionReference onReady_;
  std::unordered_map<uint64_t, Napi::Promise::Deferred> deferreds_;
  std::vector<Napi::Promise::Deferred> shutdownWaiters_;
  std::unordered_set<uint32_t> napiFaults_;  // test hook: streams whose next submit throws bad_alloc
  uint64_t nextBatch_ = 1;
  int pending_ = 0;  // batches + load + shutdown in flight
  bool loading_ = false;
  bool loaded_ = false;
  bool shuttingDown_ = false;
  bool shutDown_ = false;
  bool hookAdded_ = false;
  bool tornDown_ = false;
};

}  // namespace captiongate::napi
