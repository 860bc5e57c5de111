// N-API face of the Moonshine model on its own: load and transcribe (a batch
// of rows), each on a libuv worker with a Promise. The streaming engine
// (moonshine/moonshine_recognizer) sits on top of the same model; this
// surface exists for tests (the reference comparison, batching), and for
// bench:moonshine.
//
// The model is immutable after load and safe to run from several threads, so
// calls run concurrently; every worker holds it by shared_ptr.
#include <napi.h>

#include <functional>
#include <memory>

#include "../moonshine/model.h"
#include "napi_util.h"

namespace captiongate::napi {
namespace {

using moonshine::Model;
using moonshine::Transcript;

class MoonshineWorker : public Napi::AsyncWorker {
 public:
  MoonshineWorker(Napi::Env env, Napi::Object keepAlive, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), ref_(Napi::Persistent(keepAlive)),
        work_(std::move(work)), done_(std::move(done)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      work_();
    } catch (const std::bad_alloc&) {
      SetError("out of memory (std::bad_alloc)");
    } catch (const std::exception& e) {  // Ort::Exception is a std::exception
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

Napi::Object transcriptToJs(Napi::Env env, const Transcript& t) {
  auto o = Napi::Object::New(env);
  o.Set("text", t.text);
  auto toks = Napi::Array::New(env, t.tokens.size());
  for (size_t i = 0; i < t.tokens.size(); i++) toks.Set(static_cast<uint32_t>(i), static_cast<double>(t.tokens[i]));
  o.Set("tokens", toks);
  o.Set("meanProb", t.meanProb);
  o.Set("firstEosProb", t.firstEosProb);
  o.Set("repetitionCut", t.repetitionCut);
  o.Set("hitMaxTokens", t.hitMaxTokens);
  o.Set("steps", t.steps);
  o.Set("encodeMs", t.encodeMs);
  o.Set("decodeMs", t.decodeMs);
  o.Set("draftTokens", static_cast<double>(t.draftTokens));
  o.Set("draftAccepted", static_cast<double>(t.draftAccepted));
  o.Set("draftRedone", t.draftRedone);
  o.Set("beams", t.beams);
  if (t.greedy) o.Set("greedy", transcriptToJs(env, *t.greedy));
  return o;
}

class NativeMoonshine : public Napi::ObjectWrap<NativeMoonshine> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeMoonshine",
                       {InstanceMethod<&NativeMoonshine::Load>("load"), InstanceMethod<&NativeMoonshine::Info>("info"),
                        InstanceMethod<&NativeMoonshine::Transcribe>("transcribe")});
  }

  // new NativeMoonshine({ modelDir, ortLibrary, intraOpThreads?, foldWeights? })
  explicit NativeMoonshine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeMoonshine>(info) {
    guard(info.Env(), "NativeMoonshine", [&] {
      if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "NativeMoonshine(options) expects an object");
      Napi::Object o = info[0].As<Napi::Object>();
      settings_.dir = getString(o, "modelDir");
      settings_.ortLibrary = getString(o, "ortLibrary");
      if (settings_.dir.empty() || settings_.ortLibrary.empty())
        throw Napi::TypeError::New(info.Env(), "Expected modelDir and ortLibrary paths");
      settings_.intraOpThreads = getInt32(o, "intraOpThreads", 1, 1, 256);
      settings_.foldWeights = getBool(o, "foldWeights", false);
    });
  }

 private:
  Napi::Value Load(const Napi::CallbackInfo& info) {
    return guard(info.Env(), "load", [&]() -> Napi::Value {
      auto slot = std::make_shared<std::shared_ptr<Model>>();
      auto s = settings_;
      auto* w = new MoonshineWorker(
          info.Env(), Value(), [slot, s] { *slot = std::make_shared<Model>(s); },
          [this, slot](Napi::Env env) -> Napi::Value {
            model_ = *slot;
            return env.Undefined();
          });
      auto p = w->Promise();
      w->Queue();
      return p;
    });
  }

  std::shared_ptr<Model> need(Napi::Env env) {
    if (!model_) throw Napi::Error::New(env, "NativeMoonshine: call load() first");
    return model_;
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    return guard(info.Env(), "info", [&]() -> Napi::Value {
      auto m = need(info.Env());
      auto o = Napi::Object::New(info.Env());
      o.Set("ortVersion", m->ortVersion());
      o.Set("fileBytes", m->fileBytes());
      o.Set("takesMask", m->takesMask());
      o.Set("rowsIndependent", m->rowsIndependent());
      o.Set("layers", m->layers());
      o.Set("hidden", m->hidden());
      return o;
    });
  }

  // transcribe(rows: Float32Array[], { maxTokensPerSecond?, maxRepeats?, beamWidth?, draft? }) → one batch.
  Napi::Value Transcribe(const Napi::CallbackInfo& info) {
    return guard(info.Env(), "transcribe", [&]() -> Napi::Value {
      auto m = need(info.Env());
      if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(info.Env(), "Expected an array of Float32Array rows");
      Napi::Array a = info[0].As<Napi::Array>();
      auto rows = std::make_shared<std::vector<std::vector<float>>>();
      for (uint32_t i = 0; i < a.Length(); i++) {
        Napi::Value v = a.Get(i);
        if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
          throw Napi::TypeError::New(info.Env(), "Expected a Float32Array for rows[" + std::to_string(i) + "] but received " + describe(v));
        auto f = v.As<Napi::Float32Array>();
        if (f.ElementLength() > static_cast<size_t>(16000) * 120)
          throw Napi::RangeError::New(info.Env(), "Expected at most 120 s of audio per row");
        rows->emplace_back(f.Data(), f.Data() + f.ElementLength());
      }
      if (rows->empty()) throw Napi::RangeError::New(info.Env(), "Expected at least one row");
      moonshine::DecodeOptions opts;
      std::shared_ptr<std::vector<int64_t>> draft;
      if (info.Length() > 1 && info[1].IsObject()) {
        Napi::Object o = info[1].As<Napi::Object>();
        opts.maxTokensPerSecond = static_cast<float>(getNumber(o, "maxTokensPerSecond", opts.maxTokensPerSecond, 0.5, 50));
        opts.maxRepeats = getInt32(o, "maxRepeats", opts.maxRepeats, 0, 100);
        opts.beamWidth = getInt32(o, "beamWidth", opts.beamWidth, 1, 16);
        const Napi::Value d = o.Get("draft");
        if (!d.IsUndefined()) {
          if (!d.IsArray()) throw Napi::TypeError::New(info.Env(), "Expected draft to be an array of token ids but received " + describe(d));
          Napi::Array da = d.As<Napi::Array>();
          if (da.Length() > 4096) throw Napi::RangeError::New(info.Env(), "Expected at most 4096 draft tokens");
          draft = std::make_shared<std::vector<int64_t>>();
          for (uint32_t i = 0; i < da.Length(); i++) draft->push_back(toInt(da.Get(i), "draft[" + std::to_string(i) + "]", 0, 32767));
        }
      }
      auto out = std::make_shared<std::vector<Transcript>>();
      auto* w = new MoonshineWorker(
          info.Env(), Value(),
          [m, rows, opts, draft, out] {
            std::vector<const std::vector<float>*> ptrs;
            for (auto& r : *rows) ptrs.push_back(&r);
            *out = m->transcribe(ptrs, opts, draft.get());
          },
          [out](Napi::Env env) -> Napi::Value {
            auto arr = Napi::Array::New(env, out->size());
            for (size_t i = 0; i < out->size(); i++) arr.Set(static_cast<uint32_t>(i), transcriptToJs(env, (*out)[i]));
            return arr;
          });
      auto p = w->Promise();
      w->Queue();
      return p;
    });
  }

  moonshine::ModelSettings settings_;
  std::shared_ptr<Model> model_;
};

}  // namespace

Napi::Function InitNativeMoonshine(Napi::Env env) { return NativeMoonshine::Init(env); }

// Test hook for the repetition guard: moonshineRepeatedTail(tokens, repeats).
Napi::Value MoonshineRepeatedTail(const Napi::CallbackInfo& info) {
  return guard(info.Env(), "moonshineRepeatedTail", [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(info.Env(), "Expected an array of tokens");
    Napi::Array a = info[0].As<Napi::Array>();
    std::vector<int64_t> t;
    for (uint32_t i = 0; i < a.Length(); i++) t.push_back(toInt(a.Get(i), "tokens[" + std::to_string(i) + "]", 0, 1 << 30));
    const int repeats = info.Length() > 1 ? static_cast<int>(toInt(info[1], "repeats", 1, 100)) : 4;
    return Napi::Number::New(info.Env(), static_cast<double>(moonshine::repeatedTail(t, repeats)));
  });
}

}  // namespace captiongate::napi
