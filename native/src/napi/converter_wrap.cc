// NativeAudioConverter: the N-API face of audio/audio_converter (one per
// session; s16le/f32le, 8-48 kHz, mono/stereo in, 16 kHz mono 16-bit out:
// the samples a session's ring holds).
#include <napi.h>

#include "../audio/audio_converter.h"
#include "napi_util.h"

namespace captiongate::napi {
namespace {

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
    guard(env, "NativeAudioConverter", [&] {
      if (info.Length() < 1 || !info[0].IsObject())
        throw Napi::TypeError::New(env, "NativeAudioConverter(options) expects an object");
      Napi::Object o = info[0].As<Napi::Object>();
      const int rate = static_cast<int>(toInt(o.Get("sampleRate"), "sampleRate", 8000, 48000));
      const int channels = static_cast<int>(toInt(o.Get("channels"), "channels", 1, 2));
      const std::string enc = getString(o, "encoding");
      const int quality = getInt32(o, "quality", 5, 0, 10);
      if (enc != "s16le" && enc != "f32le")
        throw Napi::TypeError::New(env, "Expected 's16le' or 'f32le' for encoding but received '" + enc + "'");
      std::string err;
      if (!conv_.init(rate, channels, enc == "s16le" ? Encoding::kS16le : Encoding::kF32le, quality, &err))
        throw Napi::RangeError::New(env, err);
    });
  }

 private:
  // convert(bytes: Uint8Array, out: Int16Array): number
  Napi::Value Convert(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, "convert", [&]() -> Napi::Value {
      if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsTypedArray() ||
          info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
          info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int16_array)
        throw Napi::TypeError::New(env, "convert(bytes: Uint8Array, out: Int16Array)");
      auto in = info[0].As<Napi::Uint8Array>();
      auto out = info[1].As<Napi::Int16Array>();
      const size_t frameBytes = static_cast<size_t>(conv_.bytesPerFrame());
      if (in.ByteLength() % frameBytes != 0)
        throw Napi::RangeError::New(env, "Expected whole sample frames of " + std::to_string(frameBytes) +
                                             " bytes but received " + std::to_string(in.ByteLength()) + " bytes");
      const size_t frames = in.ByteLength() / frameBytes;
      if (out.ElementLength() < conv_.maxOutput(frames)) throw Napi::RangeError::New(env, "output buffer too small");
      const size_t n = conv_.convert(in.Data(), in.ByteLength(), out.Data(), out.ElementLength());
      return Napi::Number::New(env, static_cast<double>(n));
    });
  }

  // flush(out: Int16Array): number
  Napi::Value Flush(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, "flush", [&]() -> Napi::Value {
      if (info.Length() < 1 || !info[0].IsTypedArray() ||
          info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int16_array)
        throw Napi::TypeError::New(env, "flush(out: Int16Array)");
      auto out = info[0].As<Napi::Int16Array>();
      return Napi::Number::New(env, static_cast<double>(conv_.flush(out.Data(), out.ElementLength())));
    });
  }

  // maxOutput(bytes: number): number
  Napi::Value MaxOutput(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, "maxOutput", [&]() -> Napi::Value {
      // At most 2^40 bytes: far beyond any frame, and the sum below cannot overflow.
      const int64_t bytes = toInt(info[0], "bytes", 0, int64_t{1} << 40);
      const size_t frames = static_cast<size_t>(bytes) / static_cast<size_t>(conv_.bytesPerFrame());
      return Napi::Number::New(env, static_cast<double>(conv_.maxOutput(frames)));
    });
  }

  AudioConverter conv_;
};

}  // namespace

Napi::Function InitNativeAudioConverter(Napi::Env env) { return NativeAudioConverter::Init(env); }

}  // namespace captiongate::napi
