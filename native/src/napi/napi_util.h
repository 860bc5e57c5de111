// Argument helpers and the exception guard shared by every N-API wrapper.
//
// src/engine and src/audio validate first (better-sqlite3 style); these
// re-check cheaply so that nothing from JS reaches a cast unchecked: a NaN,
// an Infinity or 1e300 given where an int is expected is a RangeError naming
// the key and the range, never undefined behaviour.
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <new>
#include <string>

namespace captiongate::napi {

// Runs an N-API method body. node-addon-api (NAPI_CPP_EXCEPTIONS) turns only
// Napi::Error into a JS exception; any other C++ exception escaping a
// callback would reach std::terminate. Every method of every wrapper runs
// its body through guard(), so std::bad_alloc, std::runtime_error and the
// rest come out as a JS Error.
template <typename F>
auto guard(Napi::Env env, const char* where, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, std::string(where) + ": out of memory (std::bad_alloc)");
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  } catch (...) {
    throw Napi::Error::New(env, std::string(where) + ": unknown C++ exception");
  }
}

// How a JS value reads in an error message ("received NaN", "received a string").
inline std::string describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsNumber()) {
    const double d = v.As<Napi::Number>().DoubleValue();
    if (std::isnan(d)) return "NaN";
    if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", d);
    return buf;
  }
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "true" : "false";
  if (v.IsString()) return "a string";
  if (v.IsArray()) return "an array";
  if (v.IsFunction()) return "a function";
  if (v.IsObject()) return "an object";
  return "a value of another type";
}

// An integer in [min, max]; throws TypeError (not a number) or RangeError.
// |min|, |max| <= 2^53 so the double is exact.
inline int64_t toInt(const Napi::Value& v, const std::string& what, int64_t min, int64_t max) {
  auto message = [&] {
    return "Expected an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "] for " + what +
           " but received " + describe(v);
  };
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), message());
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d) || d < static_cast<double>(min) || d > static_cast<double>(max))
    throw Napi::RangeError::New(v.Env(), message());
  return static_cast<int64_t>(d);
}

// A finite number in [min, max].
inline double toNumber(const Napi::Value& v, const std::string& what, double min, double max) {
  auto message = [&] {
    char buf[160];
    std::snprintf(buf, sizeof buf, "Expected a number in [%g, %g] for ", min, max);
    return buf + what + " but received " + describe(v);
  };
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), message());
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d < min || d > max) throw Napi::RangeError::New(v.Env(), message());
  return d;
}

// Optional keys: undefined gives the default, anything else is checked.
inline int64_t getInt(const Napi::Object& o, const char* key, int64_t def, int64_t min, int64_t max) {
  Napi::Value v = o.Get(key);
  return v.IsUndefined() ? def : toInt(v, key, min, max);
}

inline int getInt32(const Napi::Object& o, const char* key, int def, int min, int max) {
  return static_cast<int>(getInt(o, key, def, min, max));
}

inline double getNumber(const Napi::Object& o, const char* key, double def, double min, double max) {
  Napi::Value v = o.Get(key);
  return v.IsUndefined() ? def : toNumber(v, key, min, max);
}

inline bool getBool(const Napi::Object& o, const char* key, bool def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return def;
  if (!v.IsBoolean())
    throw Napi::TypeError::New(o.Env(), std::string("Expected a boolean for ") + key + " but received " + describe(v));
  return v.As<Napi::Boolean>().Value();
}

inline std::string getString(const Napi::Object& o, const char* key, const std::string& def = std::string()) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return def;
  if (!v.IsString())
    throw Napi::TypeError::New(o.Env(), std::string("Expected a string for ") + key + " but received " + describe(v));
  return v.As<Napi::String>().Utf8Value();
}

// Stream ids are uint32 integers (0 is never issued, but is a valid "unknown").
inline uint32_t toStreamId(const Napi::Value& v, const std::string& what) {
  return static_cast<uint32_t>(toInt(v, what, 0, UINT32_MAX));
}

}  // namespace captiongate::napi
