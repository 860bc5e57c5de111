// N-API face of the native engine. Thin on purpose: src/engine validates and
// normalizes every argument first; this file re-checks cheaply, copies input
// into C++ structs on the main thread, and turns results back into objects.
#include <napi.h>
#include <pocketsphinx.h>
#include <sphinxbase/err.h>

#include <atomic>
#include <cmath>
#include <memory>
#include <unordered_map>

#include "audio_converter.h"
#include "engine.h"
#include "whisper/stream_engine.h"

namespace captiongate {
namespace {

// ---------------------------------------------------------------- helpers

double getNumber(const Napi::Object& o, const char* key, double def) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : def;
}
bool getBool(const Napi::Object& o, const char* key, bool def) {
  Napi::Value v = o.Get(key);
  return v.IsBoolean() ? v.As<Napi::Boolean>().Value() : def;
}
std::string getString(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

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

constexpr double kRate = 16000.0;
constexpr double kFrameSeconds = 0.01;

// Copies a PCM argument into int16 samples. Accepts Int16Array, Float32Array
// ([-1, 1]) or raw s16le bytes (Buffer/Uint8Array/ArrayBuffer).
bool copyPcm(const Napi::Value& v, std::vector<int16_t>* out, std::string* error) {
  if (v.IsTypedArray()) {
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    switch (ta.TypedArrayType()) {
      case napi_int16_array: {
        auto a = v.As<Napi::Int16Array>();
        out->assign(a.Data(), a.Data() + a.ElementLength());
        return true;
      }
      case napi_float32_array: {
        auto a = v.As<Napi::Float32Array>();
        const float* f = a.Data();
        out->resize(a.ElementLength());
        for (size_t i = 0; i < a.ElementLength(); ++i) {
          float x = f[i] * 32768.f;
          x = x > 32767.f ? 32767.f : (x < -32768.f ? -32768.f : x);
          (*out)[i] = static_cast<int16_t>(std::lrintf(x));
        }
        return true;
      }
      case napi_uint8_array: {
        auto a = v.As<Napi::Uint8Array>();
        if (a.ByteLength() % 2 != 0) {
          *error = "Expected whole 16-bit samples for pcm but received " + std::to_string(a.ByteLength()) + " bytes";
          return false;
        }
        out->resize(a.ByteLength() / 2);
        std::memcpy(out->data(), a.Data(), a.ByteLength());
        return true;
      }
      default:
        break;
    }
  } else if (v.IsArrayBuffer()) {
    auto ab = v.As<Napi::ArrayBuffer>();
    if (ab.ByteLength() % 2 != 0) {
      *error = "Expected whole 16-bit samples for pcm but received " + std::to_string(ab.ByteLength()) + " bytes";
      return false;
    }
    out->resize(ab.ByteLength() / 2);
    std::memcpy(out->data(), ab.Data(), ab.ByteLength());
    return true;
  }
  *error = "Expected Int16Array, Float32Array or s16le bytes for pcm";
  return false;
}

// ---------------------------------------------------------------- NativeEngine

class NativeEngine : public Napi::ObjectWrap<NativeEngine> {
 public:
  static Napi::Function Init(Napi::Env env) {
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

  explicit NativeEngine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeEngine>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "NativeEngine(options, onReady) expects an object and a function")
          .ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    onReady_ = Napi::Persistent(info[1].As<Napi::Function>());
    tsfn_ = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                          "captiongate-engine", 0, 1);
    tsfn_.Unref(env);
    napi_add_env_cleanup_hook(env, &NativeEngine::CleanupHook, this);
    if (getString(o, "kind") == "whisper") {
      whisper::WhisperEngineSettings w;
      w.modelDir = getString(o, "modelDir");
      w.device = getString(o, "device");
      if (w.device.empty()) w.device = "cpu";
      w.threads = static_cast<int>(getNumber(o, "threads", 2));
      w.maxBatch = static_cast<int>(getNumber(o, "maxBatch", w.maxBatch));
      w.vad.threshold = getNumber(o, "vadThreshold", w.vad.threshold);
      w.vad.startSpeechFrames = static_cast<int>(getNumber(o, "vadStartFrames", w.vad.startSpeechFrames));
      w.vad.postSpeechFrames = static_cast<int>(getNumber(o, "vadEndFrames", w.vad.postSpeechFrames));
      w.vadEnabled = getBool(o, "vadEnabled", true);
      w.prerollSamples = static_cast<int>(getNumber(o, "prerollSamples", w.prerollSamples));
      w.maxUtteranceSamples = static_cast<int>(getNumber(o, "maxUtteranceSamples", w.maxUtteranceSamples));
      w.partialIntervalMs = static_cast<int>(getNumber(o, "partialIntervalMs", w.partialIntervalMs));
      w.minContextFrames = static_cast<int>(getNumber(o, "minContextFrames", w.minContextFrames));
      w.noSpeechThreshold = static_cast<float>(getNumber(o, "noSpeechThreshold", w.noSpeechThreshold));
      w.logprobThreshold = static_cast<float>(getNumber(o, "logprobThreshold", w.logprobThreshold));
      w.selfTest = getBool(o, "selfTest", false);
      if (w.modelDir.empty() || w.threads < 1 || w.threads > 256 || w.maxBatch < 1 || w.maxBatch > 64 ||
          w.prerollSamples < 0 || w.maxUtteranceSamples < 16000 || w.maxUtteranceSamples > 16000 * 29 ||
          w.partialIntervalMs < 100 || w.minContextFrames < 100 || w.minContextFrames > 3000 ||
          w.minContextFrames % 2) {
        Napi::RangeError::New(env, "whisper engine options out of range").ThrowAsJavaScriptException();
        return;
      }
      engine_ = std::make_unique<whisper::WhisperStreamEngine>(std::move(w), [this] { wake(); });
      return;
    }
    EngineSettings s;
    s.search.hmm = getString(o, "hmm");
    s.search.lm = getString(o, "lm");
    s.search.dict = getString(o, "dict");
    if (s.search.hmm.empty() || s.search.lm.empty() || s.search.dict.empty()) {
      Napi::TypeError::New(env, "Expected hmm, lm and dict paths").ThrowAsJavaScriptException();
      return;
    }
    s.search.fwdflat = getBool(o, "fwdflat", false);
    s.search.bestpath = getBool(o, "bestpath", false);
    s.search.beam = getNumber(o, "beam", s.search.beam);
    s.search.wbeam = getNumber(o, "wbeam", s.search.wbeam);
    s.search.pbeam = getNumber(o, "pbeam", s.search.pbeam);
    s.search.lw = getNumber(o, "lw", s.search.lw);
    s.search.maxhmmpf = static_cast<int>(getNumber(o, "maxhmmpf", s.search.maxhmmpf));
    s.search.maxwpf = static_cast<int>(getNumber(o, "maxwpf", s.search.maxwpf));
    s.search.plWindow = static_cast<int>(getNumber(o, "plWindow", s.search.plWindow));
    s.search.removeNoise = getBool(o, "removeNoise", true);
    s.search.cmnUpdateSamples = static_cast<int>(getNumber(o, "cmnUpdateSamples", s.search.cmnUpdateSamples));
    Napi::Value extra = o.Get("extra");
    if (extra.IsObject()) {
      Napi::Object e = extra.As<Napi::Object>();
      Napi::Array keys = e.GetPropertyNames();
      for (uint32_t i = 0; i < keys.Length(); ++i) {
        std::string k = keys.Get(i).As<Napi::String>().Utf8Value();
        s.search.extra.emplace_back("-" + k, e.Get(k).ToString().Utf8Value());
      }
    }
    s.vad.threshold = getNumber(o, "vadThreshold", s.vad.threshold);
    s.vad.startSpeechFrames = static_cast<int>(getNumber(o, "vadStartFrames", s.vad.startSpeechFrames));
    s.vad.postSpeechFrames = static_cast<int>(getNumber(o, "vadEndFrames", s.vad.postSpeechFrames));
    s.threads = static_cast<int>(getNumber(o, "threads", 2));
    s.decoders = static_cast<int>(getNumber(o, "decoders", 2));
    s.prerollSamples = static_cast<int>(getNumber(o, "prerollSamples", s.prerollSamples));
    s.maxUtteranceSamples = static_cast<int>(getNumber(o, "maxUtteranceSamples", s.maxUtteranceSamples));
    s.wordConfidence = getBool(o, "wordConfidence", true);
    s.vadEnabled = getBool(o, "vadEnabled", true);
    if (s.threads < 1 || s.threads > 256 || s.decoders < 1 || s.decoders > 1024 || s.prerollSamples < 0 ||
        s.maxUtteranceSamples < 16000) {
      Napi::RangeError::New(env, "threads, decoders, prerollSamples or maxUtteranceSamples out of range")
          .ThrowAsJavaScriptException();
      return;
    }

    engine_ = std::make_unique<Engine>(std::move(s), [this] { wake(); });
  }

  ~NativeEngine() override {
    napi_remove_env_cleanup_hook(Env(), &NativeEngine::CleanupHook, this);
    stop();
  }

 private:
  static void CleanupHook(void* arg) { static_cast<NativeEngine*>(arg)->stop(); }

  // Joins workers. Only at teardown (GC or env exit), never on a request path.
  void stop() {
    if (engine_) {
      engine_->shutdown();
      engine_.reset();
    }
    if (!released_) {
      released_ = true;
      tsfn_.Release();
    }
  }

  void wake() {
    if (!wakePending_.exchange(true)) tsfn_.NonBlockingCall([this](Napi::Env env, Napi::Function) { drain(env); });
  }

  void ref(Napi::Env env) {
    if (refs_++ == 0) tsfn_.Ref(env);
  }
  void unref(Napi::Env env) {
    if (--refs_ == 0) tsfn_.Unref(env);
  }

  void drain(Napi::Env env) {
    wakePending_.store(false);
    if (!engine_) return;
    Napi::HandleScope scope(env);
    for (auto& b : engine_->takeCompleted()) {
      auto it = deferreds_.find(b->id);
      if (it == deferreds_.end()) continue;
      Napi::Promise::Deferred d = it->second;
      deferreds_.erase(it);
      d.Resolve(toJs(env, *b));
      unref(env);
    }
    std::vector<uint32_t> ready = engine_->takeReady();
    if (!ready.empty()) {
      Napi::Array ids = Napi::Array::New(env, ready.size());
      for (size_t i = 0; i < ready.size(); ++i) ids.Set(static_cast<uint32_t>(i), Napi::Number::New(env, ready[i]));
      onReady_.Call({ids});
    }
  }

  static Napi::Value toJs(Napi::Env env, const Batch& b) {
    Napi::Array arr = Napi::Array::New(env, b.out.size());
    for (size_t i = 0; i < b.out.size(); ++i) {
      const WindowOut& w = b.out[i];
      Napi::Object r = Napi::Object::New(env);
      r.Set("stream", w.stream);
      r.Set("consumed", w.consumed);
      r.Set("position", static_cast<double>(w.position));
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
      r.Set("endpoint", w.endpoint);
      r.Set("inSpeech", w.inSpeech);
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

  // load(): Promise<void>. Decoder loading takes ~0.3 s each, so it runs on a
  // libuv worker (one-off; decoding never uses the libuv pool).
  Napi::Value Load(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto deferred = Napi::Promise::Deferred::New(env);
    if (!engine_ || loading_ || loaded_) {
      deferred.Reject(Napi::Error::New(env, loaded_ ? "engine already loaded" : "engine is shut down").Value());
      return deferred.Promise();
    }
    loading_ = true;
    auto* w = new LoadWorker(env, this, deferred);
    w->Queue();
    return deferred.Promise();
  }

  class LoadWorker : public Napi::AsyncWorker {
   public:
    LoadWorker(Napi::Env env, NativeEngine* owner, Napi::Promise::Deferred d)
        : Napi::AsyncWorker(env), owner_(owner), deferred_(d), ref_(Napi::Persistent(owner->Value())) {}
    void Execute() override {
      std::string err;
      if (!owner_->engine_->load(&err)) SetError(err);
    }
    void OnOK() override {
      owner_->loading_ = false;
      owner_->loaded_ = true;
      deferred_.Resolve(Env().Undefined());
    }
    void OnError(const Napi::Error& e) override {
      owner_->loading_ = false;
      deferred_.Reject(e.Value());
    }

   private:
    NativeEngine* owner_;
    Napi::Promise::Deferred deferred_;
    Napi::ObjectReference ref_;
  };

  Napi::Value OpenStream(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!engine_) {
      Napi::Error::New(env, "engine is shut down").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::string err;
    uint32_t id = engine_->openStream(&err);
    if (id == 0) {
      Napi::Error::New(env, err).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return Napi::Number::New(env, id);
  }

  Napi::Value CloseStream(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) {
      Napi::TypeError::New(env, "closeStream(id) expects a stream id").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    bool ok = engine_ && engine_->closeStream(info[0].As<Napi::Number>().Uint32Value());
    return Napi::Boolean::New(env, ok);
  }

  Napi::Value InjectFault(const Napi::CallbackInfo& info) {
    if (engine_ && info.Length() > 0 && info[0].IsNumber())
      engine_->injectFault(info[0].As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }

  // submit(windows: {stream, start, pcm, flush}[]): Promise<Result[]>
  Napi::Value Submit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsArray()) {
      Napi::TypeError::New(env, "submit(windows) expects an array").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!engine_ || engine_->isShutdown()) {
      Napi::Error::New(env, "engine is shut down").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Array arr = info[0].As<Napi::Array>();
    auto batch = std::make_unique<Batch>();
    batch->id = nextBatch_++;
    batch->in.resize(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      Napi::Value v = arr.Get(i);
      if (!v.IsObject()) {
        Napi::TypeError::New(env, "each window must be an object").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      Napi::Object o = v.As<Napi::Object>();
      WindowIn& w = batch->in[i];
      w.stream = static_cast<uint32_t>(getNumber(o, "stream", 0));
      w.start = static_cast<int64_t>(getNumber(o, "start", -1));
      w.flush = getBool(o, "flush", false);
      if (w.start < 0) {
        Napi::TypeError::New(env, "window.start must be a sample position >= 0").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      std::string err;
      if (!copyPcm(o.Get("pcm"), &w.pcm, &err)) {
        Napi::TypeError::New(env, err).ThrowAsJavaScriptException();
        return env.Undefined();
      }
    }
    auto deferred = Napi::Promise::Deferred::New(env);
    const uint64_t id = batch->id;
    std::string err;
    deferreds_.emplace(id, deferred);
    ref(env);
    if (!engine_->submit(std::move(batch), &err)) {
      deferreds_.erase(id);
      unref(env);
      Napi::Error e = Napi::Error::New(env, err);
      e.Set("code", Napi::String::New(env, engine_->isShutdown() ? "ENGINE_SHUTDOWN" : "ENGINE_STREAM_CLOSED"));
      e.ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return deferred.Promise();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    if (!engine_) return o;
    EngineStats s = engine_->stats();
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
  }

  // shutdown(): Promise<void>. Queued windows complete with ENGINE_SHUTDOWN;
  // the join happens on a libuv worker so the main thread never waits.
  Napi::Value Shutdown(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto deferred = Napi::Promise::Deferred::New(env);
    if (!engine_) {
      deferred.Resolve(env.Undefined());
      return deferred.Promise();
    }
    shutdownWaiters_.push_back(deferred);
    if (shutdownWaiters_.size() == 1) {
      auto* w = new ShutdownWorker(env, this);
      w->Queue();
    }
    return deferred.Promise();
  }

  class ShutdownWorker : public Napi::AsyncWorker {
   public:
    ShutdownWorker(Napi::Env env, NativeEngine* owner)
        : Napi::AsyncWorker(env), owner_(owner), ref_(Napi::Persistent(owner->Value())) {
      engine_ = owner->engine_.get();
    }
    void Execute() override { engine_->shutdown(); }
    void OnOK() override {
      // Deliver the windows that completed with ENGINE_SHUTDOWN, then free.
      owner_->drain(Env());
      owner_->stop();
      std::vector<Napi::Promise::Deferred> waiters;
      waiters.swap(owner_->shutdownWaiters_);
      for (auto& d : waiters) d.Resolve(Env().Undefined());
    }

   private:
    NativeEngine* owner_;
    StreamEngine* engine_;
    Napi::ObjectReference ref_;
  };

  std::unique_ptr<StreamEngine> engine_;
  Napi::ThreadSafeFunction tsfn_;
  Napi::FunctionReference onReady_;
  std::atomic<bool> wakePending_{false};
  std::unordered_map<uint64_t, Napi::Promise::Deferred> deferreds_;
  std::vector<Napi::Promise::Deferred> shutdownWaiters_;
  uint64_t nextBatch_ = 1;
  int refs_ = 0;
  bool loading_ = false;
  bool loaded_ = false;
  bool released_ = false;
};

// ---------------------------------------------------------------- AudioConverter

class NativeAudioConverter : public Napi::ObjectWrap<NativeAudioConverter> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeAudioConverter",
                       {
                           InstanceMethod<&NativeAudioConverter::Convert>("convert"),
                           InstanceMethod<&NativeAudioConverter::Flush>("flush"),
                           InstanceMethod<&NativeAudioConverter::MaxOutput>("maxOutput"),
                       });
  }

  explicit NativeAudioConverter(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeAudioConverter>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) {
      Napi::TypeError::New(env, "NativeAudioConverter(options) expects an object").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    const int rate = static_cast<int>(getNumber(o, "sampleRate", 0));
    const int channels = static_cast<int>(getNumber(o, "channels", 0));
    const std::string enc = getString(o, "encoding");
    const int quality = static_cast<int>(getNumber(o, "quality", 5));
    if (enc != "s16le" && enc != "f32le") {
      Napi::TypeError::New(env, "encoding must be s16le or f32le").ThrowAsJavaScriptException();
      return;
    }
    if (quality < 0 || quality > 10) {
      Napi::RangeError::New(env, "quality must be 0-10").ThrowAsJavaScriptException();
      return;
    }
    std::string err;
    if (!conv_.init(rate, channels, enc == "s16le" ? Encoding::kS16le : Encoding::kF32le, quality, &err)) {
      Napi::RangeError::New(env, err).ThrowAsJavaScriptException();
    }
  }

 private:
  // convert(bytes: Uint8Array, out: Float32Array): number
  Napi::Value Convert(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
        info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      Napi::TypeError::New(env, "convert(bytes: Uint8Array, out: Float32Array)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto in = info[0].As<Napi::Uint8Array>();
    auto out = info[1].As<Napi::Float32Array>();
    if (in.ByteLength() % static_cast<size_t>(conv_.bytesPerFrame()) != 0) {
      Napi::RangeError::New(env, "Expected whole sample frames of " + std::to_string(conv_.bytesPerFrame()) +
                                     " bytes but received " + std::to_string(in.ByteLength()) + " bytes")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const size_t frames = in.ByteLength() / static_cast<size_t>(conv_.bytesPerFrame());
    if (out.ElementLength() < conv_.maxOutput(frames)) {
      Napi::RangeError::New(env, "output buffer too small").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    size_t n = conv_.convert(in.Data(), in.ByteLength(), out.Data(), out.ElementLength());
    return Napi::Number::New(env, static_cast<double>(n));
  }

  Napi::Value Flush(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      Napi::TypeError::New(env, "flush(out: Float32Array)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto out = info[0].As<Napi::Float32Array>();
    return Napi::Number::New(env, static_cast<double>(conv_.flush(out.Data(), out.ElementLength())));
  }

  Napi::Value MaxOutput(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const double bytes = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
    const size_t frames = static_cast<size_t>(bytes) / static_cast<size_t>(conv_.bytesPerFrame());
    return Napi::Number::New(env, static_cast<double>(conv_.maxOutput(frames)));
  }

  AudioConverter conv_;
};

}  // namespace

Napi::Function InitWhisper(Napi::Env env);
Napi::Value WhisperRepeatedTail(const Napi::CallbackInfo& info);

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  // PocketSphinx logs every model load to stderr; the gateway has its own logs.
  err_set_logfp(nullptr);
  exports.Set("NativeEngine", NativeEngine::Init(env));
  exports.Set("NativeAudioConverter", NativeAudioConverter::Init(env));
  exports.Set("NativeWhisper", InitWhisper(env));
  exports.Set("whisperRepeatedTail", Napi::Function::New(env, WhisperRepeatedTail));
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  return exports;
}

}  // namespace captiongate

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return captiongate::InitAddon(env, exports); }
NODE_API_MODULE(NODE_GYP_MODULE_NAME, Init)
