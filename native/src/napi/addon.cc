// Module init: the addon's exports. Each wrapper lives in its own file:
// engine_wrap (NativeEngine over the engine base), converter_wrap
// (NativeAudioConverter), whisper_wrap (NativeWhisper, the bare model),
// moonshine_wrap (NativeMoonshine, the bare model).
#include <napi.h>
#include <pocketsphinx.h>
#include <sphinxbase/err.h>

#include "engine_wrap.h"

namespace captiongate::napi {

Napi::Function InitNativeAudioConverter(Napi::Env env);
Napi::Function InitNativeWhisper(Napi::Env env);
Napi::Value WhisperRepeatedTail(const Napi::CallbackInfo& info);
Napi::Function InitNativeMoonshine(Napi::Env env);
Napi::Value MoonshineRepeatedTail(const Napi::CallbackInfo& info);

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  // PocketSphinx logs every model load to stderr; the gateway has its own
  // logs. (Its log sink is the one process-wide setting the addon touches.)
  err_set_logfp(nullptr);
  exports.Set("NativeEngine", NativeEngine::Init(env));
  exports.Set("NativeAudioConverter", InitNativeAudioConverter(env));
  exports.Set("NativeWhisper", InitNativeWhisper(env));
  exports.Set("whisperRepeatedTail", Napi::Function::New(env, WhisperRepeatedTail));
  exports.Set("NativeMoonshine", InitNativeMoonshine(env));
  exports.Set("moonshineRepeatedTail", Napi::Function::New(env, MoonshineRepeatedTail));
  exports.Set("abiVersion", Napi::Number::New(env, 2));
  return exports;
}

}  // namespace captiongate::napi

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return captiongate::napi::InitAddon(env, exports); }
NODE_API_MODULE(NODE_GYP_MODULE_NAME, Init)
