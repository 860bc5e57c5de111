// N-API face of the Whisper model on its own: load, log-mel, encode, decode
// and transcribe, each on a libuv worker with a Promise. The streaming engine
// (whisper/whisper_recognizer) sits on top of the same model; this surface
// exists for tests, the reference comparison and the encoder benchmark.
//
// Every worker holds the model by shared_ptr (a second load() replaces the
// wrapper's model, never one a running call uses) and keeps the wrapper
// referenced, whose mutex serializes inference.
#include <napi.h>

#include <functional>
#include <memory>
#include <mutex>

#include "../whisper/model.h"
#include "napi_util.h"

namespace captiongate::napi {
namespace {

using whisper::DecodeResult;
using whisper::WhisperModel;

// Runs `work` on a worker; `done` turns its result into a JS value.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, Napi::Object keepAlive, std::function<void()> work,
                std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), ref_(Napi::Persistent(keepAlive)),
        work_(std::move(work)), done_(std::move(done)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      work_();
    } catch (const std::bad_alloc&) {
      SetError("out of memory (std::bad_alloc)");
    } catch (const std::exception& e) {
      SetError(e.what());
    } catch (...) {
      SetError("unknown C++ exception");
    }
  }
  void OnOK() override {
    try {
      deferred_.Resolve(done_(Env()));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::exception& e) {
      deferred_.Reject(Napi::Error::New(Env(), e.what()).Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference ref_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
};

std::vector<float> copyF32(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(v.Env(), std::string("Expected a Float32Array for ") + what + " but received " + describe(v));
  auto a = v.As<Napi::Float32Array>();
  return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
}

Napi::Float32Array toF32(Napi::Env env, const std::vector<float>& v) {
  auto a = Napi::Float32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

Napi::Object resultToJs(Napi::Env env, const DecodeResult& r) {
  auto o = Napi::Object::New(env);
  o.Set("text", r.text);
  auto toks = Napi::Array::New(env, r.tokens.size());
  for (size_t i = 0; i < r.tokens.size(); i++) toks.Set(i, r.tokens[i]);
  o.Set("tokens", toks);
  auto segs = Napi::Array::New(env, r.segments.size());
  for (size_t i = 0; i < r.segments.size(); i++) {
    auto s = Napi::Object::New(env);
    s.Set("start", r.segments[i].start);
    s.Set("end", r.segments[i].end);
    s.Set("text", r.segments[i].text);
    segs.Set(i, s);
  }
  o.Set("segments", segs);
  o.Set("noSpeechProb", r.noSpeechProb);
  o.Set("avgLogprob", r.avgLogprob);
  o.Set("repetitionCut", r.repetitionCut);
  return o;
}

Napi::Value resultsToJs(Napi::Env env, const std::vector<DecodeResult>& rs) {
  auto a = Napi::Array::New(env, rs.size());
  for (size_t i = 0; i < rs.size(); i++) a.Set(i, resultToJs(env, rs[i]));
  return a;
}

int framesArg(const Napi::CallbackInfo& info, size_t i, bool even) {
  if (info.Length() <= i || info[i].IsUndefined()) return whisper::kWindowFrames;
  const int frames = static_cast<int>(toInt(info[i], "frames", even ? 2 : 1, whisper::kWindowFrames));
  if (even && frames % 2) throw Napi::RangeError::New(info.Env(), "Expected an even number for frames but received " + std::to_string(frames));
  return frames;
}

class NativeWhisper : public Napi::ObjectWrap<NativeWhisper> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeWhisper",
                       {
                           InstanceMethod("load", &NativeWhisper::Load),
                           InstanceMethod("logMel", &NativeWhisper::LogMel),
                           InstanceMethod("encode", &NativeWhisper::Encode),
                           InstanceMethod("decode", &NativeWhisper::Decode),
                           InstanceMethod("transcribe", &NativeWhisper::Transcribe),
                           InstanceMethod("info", &NativeWhisper::Info),
                       });
  }

  // new NativeWhisper(modelDir, { device: 'cpu' | 'perturbed', perturbation, threads })
  explicit NativeWhisper(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeWhisper>(info) {
    Napi::Env env = info.Env();
    guard(env, "NativeWhisper", [&] {
      if (!info[0].IsString()) throw Napi::TypeError::New(env, "Expected a string for modelDir but received " + describe(info[0]));
      dir_ = info[0].As<Napi::String>().Utf8Value();
      if (info.Length() > 1 && info[1].IsObject()) {
        auto o = info[1].As<Napi::Object>();
        device_ = getString(o, "device", device_);
        eps_ = static_cast<float>(getNumber(o, "perturbation", eps_, 0, 1));
        threads_ = getInt32(o, "threads", threads_, 1, 256);
      }
      if (device_ != "cpu" && device_ != "perturbed")
        throw Napi::Error::New(env, "unknown device '" + device_ + "' (this build has: cpu)");
    });
  }

 private:
  std::shared_ptr<WhisperModel> model(Napi::Env env) {
    std::lock_guard<std::mutex> lk(modelMu_);
    if (!model_) throw Napi::Error::New(env, "Whisper model is not loaded (call load() first)");
    return model_;
  }

  Napi::Value Load(const Napi::CallbackInfo& info) {
    return guard(info.Env(), "load", [&]() -> Napi::Value {
      const std::string dir = dir_, device = device_;
      const float eps = eps_;
      const int threads = threads_;
      auto* w = new PromiseWorker(
          info.Env(), Value(),
          [this, dir, device, eps, threads] {
            auto dev = device == "perturbed" ? whisper::makePerturbedDevice(eps) : whisper::makeCpuDevice(threads);
            auto m = std::make_shared<WhisperModel>(dir, std::move(dev));
            std::lock_guard<std::mutex> lk(modelMu_);
            model_ = std::move(m);
          },
          [](Napi::Env env) { return env.Undefined(); });
      w->Queue();
      return w->Promise();
    });
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    return guard(info.Env(), "info", [&]() -> Napi::Value {
      auto m = model(info.Env());
      auto o = Napi::Object::New(info.Env());
      o.Set("device", m->device().name());
      o.Set("weightBytes", static_cast<double>(m->weightBytes()));
      return o;
    });
  }

  // logMel(audio: Float32Array, frames) -> Promise<Float32Array [80][frames]>
  Napi::Value LogMel(const Napi::CallbackInfo& info) {
    return guard(info.Env(), "logMel", [&]() -> Napi::Value {
      auto m = model(info.Env());
      auto audio = std::make_shared<std::vector<float>>(copyF32(info[0], "audio"));
      if (audio->size() > static_cast<size_t>(INT32_MAX)) throw Napi::RangeError::New(info.Env(), "audio is too long");
      const int frames = framesArg(info, 1, false);
      auto out = std::make_shared<std::vector<float>>();
      auto* w = new PromiseWorker(
          info.Env(), Value(),
          [m, audio, frames, out] { *out = m->logMel().compute(audio->data(), static_cast<int>(audio->size()), frames); },
          [out](Napi::Env env) { return toF32(env, *out); });
      w->Queue();
      return w->Promise();
    });
  }

  // encode(mels: Float32Array[], frames) -> Promise<Float32Array [B][frames/2][512]>
  Napi::Value Encode(const Napi::CallbackInfo& info) {
    return guard(info.Env(), "encode", [&]() -> Napi::Value {
      auto m = model(info.Env());
      if (!info[0].IsArray()) throw Napi::TypeError::New(info.Env(), "mels must be an array of Float32Array");
      auto arr = info[0].As<Napi::Array>();
      const int frames = static_cast<int>(toInt(info[1], "frames", 2, whisper::kWindowFrames));
      if (frames % 2) throw Napi::RangeError::New(info.Env(), "Expected an even number for frames");
      auto mels = std::make_shared<std::vector<std::vector<float>>>();
      for (uint32_t i = 0; i < arr.Length(); i++) {
        mels->push_back(copyF32(arr.Get(i), "mel"));
        if (mels->back().size() != static_cast<size_t>(whisper::kMels) * frames)
          throw Napi::RangeError::New(info.Env(), "each mel must hold 80 × frames values");
      }
      auto out = std::make_shared<std::vector<float>>();
      auto* w = new PromiseWorker(
          info.Env(), Value(),
          [this, m, mels, frames, out] {
            std::vector<const float*> ptrs;
            for (auto& v : *mels) ptrs.push_back(v.data());
            std::lock_guard<std::mutex> lk(inferMu_);
            m->encode(ptrs, frames, out.get());
          },
          [out](Napi::Env env) { return toF32(env, *out); });
      w->Queue();
      return w->Promise();
    });
  }

  // decode(enc: Float32Array [B][ctx][512], B, ctx) -> Promise<result[]>
  Napi::Value Decode(const Napi::CallbackInfo& info) {
    return guard(info.Env(), "decode", [&]() -> Napi::Value {
      auto m = model(info.Env());
      auto enc = std::make_shared<std::vector<float>>(copyF32(info[0], "enc"));
      const int B = static_cast<int>(toInt(info[1], "B", 1, 1024));
      const int ctx = static_cast<int>(toInt(info[2], "ctx", 1, whisper::kAudioCtx));
      if (enc->size() != static_cast<size_t>(B) * ctx * whisper::kDModel)
        throw Napi::RangeError::New(info.Env(), "enc must hold B × ctx × 512 values");
      auto out = std::make_shared<std::vector<DecodeResult>>();
      auto* w = new PromiseWorker(
          info.Env(), Value(),
          [this, m, enc, B, ctx, out] {
            std::lock_guard<std::mutex> lk(inferMu_);
            *out = m->decode(enc->data(), B, ctx, whisper::DecodeOptions{});
          },
          [out](Napi::Env env) { return resultsToJs(env, *out); });
      w->Queue();
      return w->Promise();
    });
  }

  // transcribe(audios: Float32Array[], frames?) -> Promise<result[]>: one
  // batch, log-mel + encoder + decoder.
  Napi::Value Transcribe(const Napi::CallbackInfo& info) {
    return guard(info.Env(), "transcribe", [&]() -> Napi::Value {
      auto m = model(info.Env());
      if (!info[0].IsArray()) throw Napi::TypeError::New(info.Env(), "audios must be an array of Float32Array");
      auto arr = info[0].As<Napi::Array>();
      const int frames = framesArg(info, 1, true);
      auto audios = std::make_shared<std::vector<std::vector<float>>>();
      for (uint32_t i = 0; i < arr.Length(); i++) {
        audios->push_back(copyF32(arr.Get(i), "audio"));
        if (audios->back().size() > static_cast<size_t>(INT32_MAX)) throw Napi::RangeError::New(info.Env(), "audio is too long");
      }
      auto out = std::make_shared<std::vector<DecodeResult>>();
      auto* w = new PromiseWorker(
          info.Env(), Value(),
          [this, m, audios, frames, out] {
            std::vector<std::vector<float>> mels;
            std::vector<const float*> ptrs;
            for (auto& a : *audios) mels.push_back(m->logMel().compute(a.data(), static_cast<int>(a.size()), frames));
            for (auto& v : mels) ptrs.push_back(v.data());
            std::vector<float> enc;
            std::lock_guard<std::mutex> lk(inferMu_);
            m->encode(ptrs, frames, &enc);
            *out = m->decode(enc.data(), static_cast<int>(ptrs.size()), frames / 2, whisper::DecodeOptions{});
          },
          [out](Napi::Env env) { return resultsToJs(env, *out); });
      w->Queue();
      return w->Promise();
    });
  }

  std::string dir_;
  std::string device_ = "cpu";
  float eps_ = 0.05f;
  int threads_ = 1;
  std::mutex modelMu_;  // guards model_ (set by a load worker, read on the JS thread)
  std::shared_ptr<WhisperModel> model_;
  std::mutex inferMu_;  // one inference at a time per model (scratch is per call; BLAS is shared)
};

}  // namespace

Napi::Function InitNativeWhisper(Napi::Env env) { return NativeWhisper::Init(env); }

// Test hook for the repetition guard: whisperRepeatedTail(tokens, repeats).
Napi::Value WhisperRepeatedTail(const Napi::CallbackInfo& info) {
  return guard(info.Env(), "whisperRepeatedTail", [&]() -> Napi::Value {
    if (!info[0].IsArray()) throw Napi::TypeError::New(info.Env(), "tokens must be an array");
    auto a = info[0].As<Napi::Array>();
    std::vector<int> t;
    for (uint32_t i = 0; i < a.Length(); i++) t.push_back(static_cast<int>(toInt(a.Get(i), "token", INT32_MIN, INT32_MAX)));
    const int repeats = info.Length() > 1 && !info[1].IsUndefined()
                            ? static_cast<int>(toInt(info[1], "repeats", 1, 1000))
                            : whisper::DecodeOptions{}.maxRepeats;
    return Napi::Number::New(info.Env(), static_cast<double>(whisper::repeatedTail(t, repeats)));
  });
}

}  // namespace captiongate::napi
