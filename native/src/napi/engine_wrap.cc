// NativeEngine: options in, EngineBase with the chosen recognizer, results
// back as objects. Thin on purpose: src/engine validates and normalizes every
// argument first; this file re-checks cheaply (napi_util.h), copies input
// into C++ structs on the JS thread, and turns results back into objects.
#include "engine_wrap.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "../base/null_recognizer.h"
#include "../moonshine/moonshine_recognizer.h"
#include "../pocketsphinx/ps_recognizer.h"
#include "../whisper/whisper_recognizer.h"
#include "napi_util.h"

namespace captiongate::napi {
namespace {

constexpr double kRate = 16000.0;
constexpr double kFrameSeconds = 0.01;
constexpr int64_t kMaxStart = int64_t{1} << 53;                   // exact in a double
constexpr size_t kMaxWindowSamples = static_cast<size_t>(16000) * 600;  // 10 minutes

const char* errorCodeName(ErrorCode c) {
  switch (c) {
    case ErrorCode::kNone: return nullptr;
    case ErrorCode::kDecodeFailed: return "ENGINE_DECODE_FAILED";
    case ErrorCode::kStreamClosed: return "ENGINE_STREAM_CLOSED";
    case ErrorCode::kShutdown: return "ENGINE_SHUTDOWN";
    case ErrorCode::kBadWindow: return "ENGINE_BAD_WINDOW";
  }
  return "ENGINE_ERROR";
}

// ---------------------------------------------------------------- options

std::unique_ptr<Recognizer> makePocketSphinx(const Napi::Object& o) {
  PsSettings s;
  s.search.hmm = getString(o, "hmm");
  s.search.lm = getString(o, "lm");
  s.search.dict = getString(o, "dict");
  if (s.search.hmm.empty() || s.search.lm.empty() || s.search.dict.empty())
    throw Napi::TypeError::New(o.Env(), "Expected hmm, lm and dict paths");
  s.search.fwdflat = getBool(o, "fwdflat", false);
  s.search.bestpath = getBool(o, "bestpath", false);
  s.search.beam = getNumber(o, "beam", s.search.beam, 0, 1);
  s.search.wbeam = getNumber(o, "wbeam", s.search.wbeam, 0, 1);
  s.search.pbeam = getNumber(o, "pbeam", s.search.pbeam, 0, 1);
  s.search.lw = getNumber(o, "lw", s.search.lw, 0, 100);
  s.search.maxhmmpf = getInt32(o, "maxhmmpf", s.search.maxhmmpf, -1, 1'000'000);
  s.search.maxwpf = getInt32(o, "maxwpf", s.search.maxwpf, -1, 1'000'000);
  s.search.plWindow = getInt32(o, "plWindow", s.search.plWindow, 0, 100);
  s.search.removeNoise = getBool(o, "removeNoise", true);
  s.search.cmnUpdateSamples = getInt32(o, "cmnUpdateSamples", s.search.cmnUpdateSamples, 0, 16000 * 60);
  Napi::Value extra = o.Get("extra");
  if (!extra.IsUndefined()) {
    if (!extra.IsObject()) throw Napi::TypeError::New(o.Env(), "Expected an object for extra but received " + describe(extra));
    Napi::Object e = extra.As<Napi::Object>();
    Napi::Array keys = e.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      std::string k = keys.Get(i).ToString().Utf8Value();
      s.search.extra.emplace_back("-" + k, e.Get(k).ToString().Utf8Value());
    }
  }
  s.vad.threshold = getNumber(o, "vadThreshold", s.vad.threshold, 0, 100);
  s.vad.startSpeechFrames = getInt32(o, "vadStartFrames", s.vad.startSpeechFrames, 1, 100'000);
  s.vad.postSpeechFrames = getInt32(o, "vadEndFrames", s.vad.postSpeechFrames, 1, 100'000);
  s.threads = getInt32(o, "threads", 2, 1, 256);
  s.decoders = getInt32(o, "decoders", 2, 1, 1024);
  s.prerollSamples = getInt32(o, "prerollSamples", s.prerollSamples, 0, 16000 * 10);
  s.maxUtteranceSamples = getInt32(o, "maxUtteranceSamples", s.maxUtteranceSamples, 16000, 16000 * 3600);
  s.holdSamples = getInt32(o, "holdSamples", s.holdSamples, 0, 16000 * 3600);
  s.wordConfidence = getBool(o, "wordConfidence", true);
  s.vadEnabled = getBool(o, "vadEnabled", true);
  return std::make_unique<PsRecognizer>(std::move(s));
}

std::unique_ptr<Recognizer> makeWhisper(const Napi::Object& o) {
  whisper::WhisperSettings w;
  w.modelDir = getString(o, "modelDir");
  if (w.modelDir.empty()) throw Napi::TypeError::New(o.Env(), "Expected a model directory for modelDir");
  w.device = getString(o, "device", "cpu");
  w.threads = getInt32(o, "threads", 2, 1, 256);
  w.maxBatch = getInt32(o, "maxBatch", w.maxBatch, 1, 64);
  w.vad.threshold = getNumber(o, "vadThreshold", w.vad.threshold, 0, 100);
  w.vad.startSpeechFrames = getInt32(o, "vadStartFrames", w.vad.startSpeechFrames, 1, 100'000);
  w.vad.postSpeechFrames = getInt32(o, "vadEndFrames", w.vad.postSpeechFrames, 1, 100'000);
  w.vadEnabled = getBool(o, "vadEnabled", true);
  w.prerollSamples = getInt32(o, "prerollSamples", w.prerollSamples, 0, 16000 * 10);
  w.maxUtteranceSamples = getInt32(o, "maxUtteranceSamples", w.maxUtteranceSamples, 16000, 16000 * 29);
  w.partialIntervalMs = getInt32(o, "partialIntervalMs", w.partialIntervalMs, 100, 600'000);
  w.minContextFrames = getInt32(o, "minContextFrames", w.minContextFrames, 100, 3000);
  if (w.minContextFrames % 2)
    throw Napi::RangeError::New(o.Env(), "Expected an even number of frames for minContextFrames but received " +
                                             std::to_string(w.minContextFrames));
  w.noSpeechThreshold = static_cast<float>(getNumber(o, "noSpeechThreshold", w.noSpeechThreshold, 0, 1));
  w.logprobThreshold = static_cast<float>(getNumber(o, "logprobThreshold", w.logprobThreshold, -1e6, 1e6));
  w.selfTest = getBool(o, "selfTest", false);
  return std::make_unique<whisper::WhisperRecognizer>(std::move(w));
}

std::unique_ptr<Recognizer> makeMoonshine(const Napi::Object& o) {
  moonshine::MoonshineSettings m;
  m.model.dir = getString(o, "modelDir");
  m.model.ortLibrary = getString(o, "ortLibrary");
  if (m.model.dir.empty()) throw Napi::TypeError::New(o.Env(), "Expected a model directory for modelDir");
  if (m.model.ortLibrary.empty()) throw Napi::TypeError::New(o.Env(), "Expected the ONNX Runtime library path for ortLibrary");
  m.model.intraOpThreads = getInt32(o, "intraOpThreads", 1, 1, 256);
  m.model.foldWeights = getBool(o, "foldWeights", false);
  m.preview.dir = getString(o, "previewModelDir", "");
  if (!m.preview.dir.empty()) {
    m.preview.ortLibrary = m.model.ortLibrary;
    m.preview.intraOpThreads = m.model.intraOpThreads;
  }
  m.threads = getInt32(o, "threads", 2, 1, 256);
  m.maxBatch = getInt32(o, "maxBatch", m.maxBatch, 1, 64);
  m.decode.maxTokensPerSecond = static_cast<float>(getNumber(o, "maxTokensPerSecond", m.decode.maxTokensPerSecond, 0.5, 50));
  m.decode.maxRepeats = getInt32(o, "maxRepeats", m.decode.maxRepeats, 0, 100);
  m.finalBeamWidth = getInt32(o, "finalBeamWidth", m.finalBeamWidth, 1, 16);
  m.vad.threshold = getNumber(o, "vadThreshold", m.vad.threshold, 0, 100);
  m.vad.startSpeechFrames = getInt32(o, "vadStartFrames", m.vad.startSpeechFrames, 1, 100'000);
  m.vad.postSpeechFrames = getInt32(o, "vadEndFrames", m.vad.postSpeechFrames, 1, 100'000);
  m.vadEnabled = getBool(o, "vadEnabled", true);
  m.prerollSamples = getInt32(o, "prerollSamples", m.prerollSamples, 0, 16000 * 10);
  m.maxUtteranceSamples = getInt32(o, "maxUtteranceSamples", m.maxUtteranceSamples, 16000, 16000 * 60);
  m.partialIntervalMs = getInt32(o, "partialIntervalMs", m.partialIntervalMs, 10, 600'000);
  m.tailSamples = getInt32(o, "tailSamples", m.tailSamples, 0, 16000 * 10);
  m.roundMs = getInt32(o, "roundMs", m.roundMs, 1, 10'000);
  m.partialLoadShare = getNumber(o, "partialLoadShare", m.partialLoadShare, 0.05, 1);
  m.minMeanProb = getNumber(o, "minMeanProb", m.minMeanProb, 0, 1);
  return std::make_unique<moonshine::MoonshineRecognizer>(std::move(m));
}

std::unique_ptr<Recognizer> makeRecognizer(const Napi::Object& o) {
  const std::string kind = getString(o, "kind", "pocketsphinx");
  if (kind == "pocketsphinx") return makePocketSphinx(o);
  if (kind == "whisper") return makeWhisper(o);
  if (kind == "moonshine") return makeMoonshine(o);
  if (kind == "null") {
    NullSettings n;
    n.workers = getInt32(o, "threads", 1, 1, 256);
    return std::make_unique<NullRecognizer>(n);
  }
  throw Napi::TypeError::New(o.Env(), "Expected 'pocketsphinx', 'whisper', 'moonshine' or 'null' for kind but received '" + kind + "'");
}

// ---------------------------------------------------------------- windows

// Copies a PCM argument into int16 samples. Accepts Int16Array, Float32Array
// ([-1, 1]; NaN reads as 0) or raw s16le bytes (Buffer/Uint8Array/ArrayBuffer).
void copyPcm(const Napi::Value& v, std::vector<int16_t>* out) {
  Napi::Env env = v.Env();
  auto tooLong = [&](size_t n) {
    if (n > kMaxWindowSamples)
      throw Napi::RangeError::New(env, "Expected at most " + std::to_string(kMaxWindowSamples) +
                                           " samples for window.pcm but received " + std::to_string(n));
  };
  auto bytes = [&](const uint8_t* p, size_t n) {
    if (n % 2 != 0)
      throw Napi::TypeError::New(env, "Expected whole 16-bit samples for pcm but received " + std::to_string(n) + " bytes");
    tooLong(n / 2);
    out->resize(n / 2);
    if (n) std::memcpy(out->data(), p, n);
  };
  if (v.IsTypedArray()) {
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    switch (ta.TypedArrayType()) {
      case napi_int16_array: {
        auto a = v.As<Napi::Int16Array>();
        tooLong(a.ElementLength());
        out->assign(a.Data(), a.Data() + a.ElementLength());
        return;
      }
      case napi_float32_array: {
        auto a = v.As<Napi::Float32Array>();
        tooLong(a.ElementLength());
        const float* f = a.Data();
        out->resize(a.ElementLength());
        for (size_t i = 0; i < a.ElementLength(); ++i) {
          float x = f[i] * 32768.f;
          if (!(x == x)) x = 0.f;
          x = x > 32767.f ? 32767.f : (x < -32768.f ? -32768.f : x);
          (*out)[i] = static_cast<int16_t>(std::lrintf(x));
        }
        return;
      }
      case napi_uint8_array: {
        auto a = v.As<Napi::Uint8Array>();
        bytes(a.Data(), a.ByteLength());
        return;
      }
      default:
        break;
    }
  } else if (v.IsArrayBuffer()) {
    auto ab = v.As<Napi::ArrayBuffer>();
    bytes(static_cast<const uint8_t*>(ab.Data()), ab.ByteLength());
    return;
  }
  throw Napi::TypeError::New(env, "Expected Int16Array, Float32Array or s16le bytes for pcm but received " + describe(v));
}

Napi::Value resultsToJs(Napi::Env env, const Batch& b) {
  Napi::Array arr = Napi::Array::New(env, b.out.size());
  for (size_t i = 0; i < b.out.size(); ++i) {
    const WindowOut& w = b.out[i];
    Napi::Object r = Napi::Object::New(env);
    r.Set("stream", w.stream);
    r.Set("consumed", w.consumed);
    if (w.hasPartial) {
      Napi::Object p = Napi::Object::New(env);
      p.Set("text", w.partial);
      p.Set("start", static_cast<double>(w.partialStart) / kRate);
      p.Set("end", static_cast<double>(w.partialEnd) / kRate);
      r.Set("partial", p);
    } else {
      r.Set("partial", env.Null());
    }
    Napi::Array finals = Napi::Array::New(env, w.finals.size());
    for (size_t f = 0; f < w.finals.size(); ++f) {
      const Utterance& u = w.finals[f];
      Napi::Object fo = Napi::Object::New(env);
      const double base = static_cast<double>(u.startSample) / kRate;
      fo.Set("text", u.text);
      fo.Set("start", base);
      fo.Set("end", static_cast<double>(u.endSample) / kRate);
      Napi::Array words = Napi::Array::New(env, u.words.size());
      for (size_t k = 0; k < u.words.size(); ++k) {
        const Word& wd = u.words[k];
        Napi::Object wo = Napi::Object::New(env);
        wo.Set("word", wd.text);
        wo.Set("start", base + wd.startFrame * kFrameSeconds);
        wo.Set("end", base + (wd.endFrame + 1) * kFrameSeconds);
        wo.Set("confidence", static_cast<double>(wd.confidence));
        words.Set(static_cast<uint32_t>(k), wo);
      }
      fo.Set("words", words);
      finals.Set(static_cast<uint32_t>(f), fo);
    }
    r.Set("finals", finals);
    r.Set("waiting", w.waiting);
    r.Set("flushed", w.flushed);
    r.Set("decoderWaitMs", w.decoderWaitMs);
    if (const char* code = errorCodeName(w.error)) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("code", code);
      e.Set("message", w.errorMessage);
      r.Set("error", e);
    } else {
      r.Set("error", env.Null());
    }
    arr.Set(static_cast<uint32_t>(i), r);
  }
  return arr;
}

// Worker threads: ask the JS thread to drain. Coalesced: one call in the
// queue at a time; the callback clears the flag before it drains, so work
// that completes during a drain wakes it again.
void wake(const std::shared_ptr<Delivery>& d) {
  if (d->wakePending.exchange(true)) return;
  std::lock_guard<std::mutex> lk(d->mu);
  if (!d->open) return;
  const napi_status st = d->tsfn.NonBlockingCall([d](Napi::Env env, Napi::Function) {
    d->wakePending.store(false);
    NativeEngine* owner = d->owner;
    if (!owner) return;
    // A throwing onReady listener (or an allocation failure while building
    // results) becomes an uncaught JS exception, not std::terminate.
    try {
      owner->drain(env);
    } catch (const Napi::Error& e) {
      e.ThrowAsJavaScriptException();
    } catch (const std::exception& e) {
      Napi::Error::New(env, std::string("engine result delivery: ") + e.what()).ThrowAsJavaScriptException();
    }
  });
  if (st != napi_ok) d->wakePending.store(false);
}

// ---------------------------------------------------------------- async workers

class LoadWorker : public Napi::AsyncWorker {
 public:
  LoadWorker(Napi::Env env, std::shared_ptr<EngineBase> engine, std::shared_ptr<Delivery> delivery,
             Napi::Promise::Deferred deferred)
      : Napi::AsyncWorker(env), engine_(std::move(engine)), delivery_(std::move(delivery)), deferred_(deferred) {}
  void Execute() override {
    try {
      engine_->load();
    } catch (const std::exception& e) {
      SetError(e.what());
    } catch (...) {
      SetError("engine load failed: unknown exception");
    }
  }
  void OnOK() override {
    if (delivery_->owner) delivery_->owner->loadDone(Env(), true);
    deferred_.Resolve(Env().Undefined());
  }
  void OnError(const Napi::Error& e) override {
    if (delivery_->owner) delivery_->owner->loadDone(Env(), false);
    deferred_.Reject(e.Value());
  }

 private:
  std::shared_ptr<EngineBase> engine_;
  std::shared_ptr<Delivery> delivery_;
  Napi::Promise::Deferred deferred_;
};

class ShutdownWorker : public Napi::AsyncWorker {
 public:
  ShutdownWorker(Napi::Env env, std::shared_ptr<EngineBase> engine, std::shared_ptr<Delivery> delivery)
      : Napi::AsyncWorker(env), engine_(std::move(engine)), delivery_(std::move(delivery)) {}
  void Execute() override {
    try {
      engine_->shutdown();
    } catch (const std::exception& e) {
      SetError(e.what());
    } catch (...) {
      SetError("engine shutdown failed: unknown exception");
    }
  }
  void OnOK() override {
    if (delivery_->owner) delivery_->owner->shutdownDone(Env());
  }
  void OnError(const Napi::Error&) override {
    if (delivery_->owner) delivery_->owner->shutdownDone(Env());
  }

 private:
  std::shared_ptr<EngineBase> engine_;
  std::shared_ptr<Delivery> delivery_;
};

}  // namespace

// ---------------------------------------------------------------- NativeEngine

Napi::Function NativeEngine::Init(Napi::Env env) {
  return DefineClass(env, "NativeEngine",
                     {
                         InstanceMethod<&NativeEngine::Load>("load"),
                         InstanceMethod<&NativeEngine::OpenStream>("openStream"),
                         InstanceMethod<&NativeEngine::CloseStream>("closeStream"),
                         InstanceMethod<&NativeEngine::Submit>("submit"),
                         InstanceMethod<&NativeEngine::Stats>("stats"),
                         InstanceMethod<&NativeEngine::Shutdown>("shutdown"),
                         InstanceMethod<&NativeEngine::InjectFault>("injectFault"),
                     });
}

// new NativeEngine(options, onReady). Options are read (and range-checked)
// before anything is created, so a bad option throws with nothing to undo.
NativeEngine::NativeEngine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeEngine>(info) {
  Napi::Env env = info.Env();
  guard(env, "NativeEngine", [&] {
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction())
      throw Napi::TypeError::New(env, "NativeEngine(options, onReady) expects an object and a function");
    std::unique_ptr<Recognizer> recognizer = makeRecognizer(info[0].As<Napi::Object>());
    auto delivery = std::make_shared<Delivery>();
    delivery->tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                                   "captiongate-engine", 0, 1);
    delivery->tsfn.Unref(env);  // ref'd only while something is in flight
    delivery->open = true;
    try {
      engine_ = std::make_shared<EngineBase>(std::move(recognizer), [d = delivery] { wake(d); });
      onReady_ = Napi::Persistent(info[1].As<Napi::Function>());
      if (napi_add_env_cleanup_hook(env, &NativeEngine::CleanupHook, this) != napi_ok)
        throw std::runtime_error("cannot register the engine's cleanup hook");
    } catch (...) {
      delivery->open = false;
      delivery->tsfn.Release();
      engine_.reset();
      throw;
    }
    hookAdded_ = true;
    delivery->owner = this;
    delivery_ = std::move(delivery);
  });
}

NativeEngine::~NativeEngine() {
  if (hookAdded_) napi_remove_env_cleanup_hook(Env(), &NativeEngine::CleanupHook, this);
  teardown();
}

void NativeEngine::CleanupHook(void* arg) { static_cast<NativeEngine*>(arg)->teardown(); }

// At GC (nothing in flight: the wrapper is referenced while anything is) or
// at env exit (a load or shutdown may still run on a libuv thread: the
// engine's shutdown() waits for it; the AsyncWorker keeps the engine alive).
void NativeEngine::teardown() {
  if (tornDown_ || !delivery_) return;
  tornDown_ = true;
  delivery_->owner = nullptr;
  engine_->shutdown();  // joins workers: no Notify after this
  std::lock_guard<std::mutex> lk(delivery_->mu);
  if (delivery_->open) {
    delivery_->open = false;
    delivery_->tsfn.Release();
  }
}

void NativeEngine::hold(Napi::Env env) {
  if (pending_++ > 0) return;
  Ref();
  std::lock_guard<std::mutex> lk(delivery_->mu);
  if (delivery_->open) delivery_->tsfn.Ref(env);
}

void NativeEngine::unhold(Napi::Env env) {
  if (pending_ <= 0 || --pending_ > 0) return;
  {
    std::lock_guard<std::mutex> lk(delivery_->mu);
    if (delivery_->open) delivery_->tsfn.Unref(env);
  }
  Unref();
}

void NativeEngine::drain(Napi::Env env) {
  Napi::HandleScope scope(env);
  int done = 0;
  for (auto& b : engine_->takeCompleted()) {
    auto it = deferreds_.find(b->id);
    if (it == deferreds_.end()) continue;
    Napi::Promise::Deferred d = it->second;
    deferreds_.erase(it);
    ++done;
    try {
      d.Resolve(resultsToJs(env, *b));
    } catch (const Napi::Error& e) {
      d.Reject(e.Value());
    } catch (const std::exception& e) {
      d.Reject(Napi::Error::New(env, std::string("engine results: ") + e.what()).Value());
    }
  }
  while (done-- > 0) unhold(env);
  std::vector<uint32_t> ready = engine_->takeReady();
  if (!ready.empty() && !onReady_.IsEmpty()) {
    Napi::Array ids = Napi::Array::New(env, ready.size());
    for (size_t i = 0; i < ready.size(); ++i) ids.Set(static_cast<uint32_t>(i), Napi::Number::New(env, ready[i]));
    onReady_.Call({ids});
  }
}

void NativeEngine::loadDone(Napi::Env env, bool ok) {
  loading_ = false;
  loaded_ = ok;
  unhold(env);
}

void NativeEngine::shutdownDone(Napi::Env env) {
  // Deliver the windows that completed with ENGINE_SHUTDOWN, then settle.
  try {
    drain(env);
  } catch (...) {
    // A throwing onReady listener must not keep shutdown() from settling.
  }
  shutDown_ = true;
  std::vector<Napi::Promise::Deferred> waiters;
  waiters.swap(shutdownWaiters_);
  for (auto& d : waiters) d.Resolve(env.Undefined());
  unhold(env);
}

// load(): Promise<void>. Model loading is slow, so it runs on a libuv worker
// (one-off; decoding never uses the libuv pool).
Napi::Value NativeEngine::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, "load", [&]() -> Napi::Value {
    auto deferred = Napi::Promise::Deferred::New(env);
    if (loading_ || loaded_) {
      deferred.Reject(Napi::Error::New(env, loaded_ ? "engine already loaded" : "engine is loading").Value());
      return deferred.Promise();
    }
    auto* w = new LoadWorker(env, engine_, delivery_, deferred);
    loading_ = true;
    hold(env);
    w->Queue();
    return deferred.Promise();
  });
}

Napi::Value NativeEngine::OpenStream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, "openStream", [&]() -> Napi::Value {
    StreamOptions options;
    if (info.Length() > 0 && !info[0].IsUndefined()) {
      if (!info[0].IsObject()) throw Napi::TypeError::New(env, "Expected an object for stream options but received " + describe(info[0]));
      // -1: no endpoint; 0: the engine's own; else 10 ms frames (src/engine checked the range).
      options.endpointFrames = getInt32(info[0].As<Napi::Object>(), "endpointFrames", 0, StreamOptions::kNoEndpoint, 100'000);
    }
    return Napi::Number::New(env, engine_->openStream(options));
  });
}

Napi::Value NativeEngine::CloseStream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, "closeStream", [&]() -> Napi::Value {
    const uint32_t id = toStreamId(info[0], "stream id");
    napiFaults_.erase(id);
    return Napi::Boolean::New(env, engine_->closeStream(id));
  });
}

// Test hook, never on the wire: injectFault(stream, kind = 'fail').
Napi::Value NativeEngine::InjectFault(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, "injectFault", [&]() -> Napi::Value {
    const uint32_t id = toStreamId(info[0], "stream id");
    std::string kind = "fail";
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      if (!info[1].IsString())
        throw Napi::TypeError::New(env, "Expected 'fail', 'throw', 'bad_alloc' or 'napi' for kind but received " +
                                            describe(info[1]));
      kind = info[1].As<Napi::String>().Utf8Value();
    }
    bool ok = false;
    if (kind == "fail") {
      ok = engine_->injectFault(id, EngineBase::Fault::kFail);
    } else if (kind == "throw") {
      ok = engine_->injectFault(id, EngineBase::Fault::kThrow);
    } else if (kind == "bad_alloc") {
      ok = engine_->injectFault(id, EngineBase::Fault::kBadAlloc);
    } else if (kind == "napi") {
      ok = engine_->streamOpen(id);
      if (ok) napiFaults_.insert(id);
    } else {
      throw Napi::TypeError::New(env, "Expected 'fail', 'throw', 'bad_alloc' or 'napi' for kind but received '" + kind + "'");
    }
    return Napi::Boolean::New(env, ok);
  });
}

// submit(windows: {stream, start, pcm, flush}[]): Promise<Result[]>
Napi::Value NativeEngine::Submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, "submit", [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "submit(windows) expects an array");
    Napi::Array arr = info[0].As<Napi::Array>();
    auto batch = std::make_unique<Batch>();
    batch->in.resize(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      Napi::Value v = arr.Get(i);
      if (!v.IsObject()) throw Napi::TypeError::New(env, "Expected an object for each window but received " + describe(v));
      Napi::Object o = v.As<Napi::Object>();
      WindowIn& w = batch->in[i];
      w.stream = toStreamId(o.Get("stream"), "window.stream");
      w.start = toInt(o.Get("start"), "window.start", 0, kMaxStart);
      w.flush = getBool(o, "flush", false);
      // Test hook "napi": copying this window runs out of memory.
      if (!napiFaults_.empty() && napiFaults_.erase(w.stream)) throw std::bad_alloc();
      copyPcm(o.Get("pcm"), &w.pcm);
    }
    auto deferred = Napi::Promise::Deferred::New(env);
    const uint64_t id = nextBatch_++;
    batch->id = id;
    deferreds_.emplace(id, deferred);
    hold(env);
    std::string err;
    const ErrorCode rejected = engine_->submit(batch, &err);
    if (rejected != ErrorCode::kNone) {
      deferreds_.erase(id);
      unhold(env);
      Napi::Error e = Napi::Error::New(env, err);
      e.Set("code", Napi::String::New(env, errorCodeName(rejected)));
      throw e;
    }
    return deferred.Promise();
  });
}

Napi::Value NativeEngine::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, "stats", [&]() -> Napi::Value {
    const EngineStats s = engine_->stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("decoders", s.decoders);
    o.Set("decodersInUse", s.decodersInUse);
    o.Set("streams", s.streams);
    o.Set("streamsWaiting", s.streamsWaiting);
    o.Set("windowsProcessed", static_cast<double>(s.windowsProcessed));
    o.Set("samplesProcessed", static_cast<double>(s.samplesProcessed));
    o.Set("samplesDecoded", static_cast<double>(s.samplesDecoded));
    o.Set("decoderWaits", static_cast<double>(s.decoderWaits));
    o.Set("decoderWaitMsTotal", s.decoderWaitMsTotal);
    o.Set("queuedWindows", static_cast<double>(s.queuedWindows));
    o.Set("busyMs", s.busyMs);
    o.Set("modelBytes", s.modelBytes);
    return o;
  });
}

// shutdown(): Promise<void>. Queued windows complete with ENGINE_SHUTDOWN;
// the join happens on a libuv worker so the JS thread never waits.
Napi::Value NativeEngine::Shutdown(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, "shutdown", [&]() -> Napi::Value {
    auto deferred = Napi::Promise::Deferred::New(env);
    if (shutDown_) {
      deferred.Resolve(env.Undefined());
      return deferred.Promise();
    }
    shutdownWaiters_.push_back(deferred);
    if (!shuttingDown_) {
      auto* w = new ShutdownWorker(env, engine_, delivery_);
      shuttingDown_ = true;
      hold(env);
      w->Queue();
    }
    return deferred.Promise();
  });
}

}  // namespace captiongate::napi
