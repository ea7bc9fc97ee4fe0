// binding_common.cc — JS error helpers and option readers (see binding_common.h).
#include "binding_common.h"

#include <cmath>
#include <cstdio>

namespace monarch {
namespace binding {

void ThrowTypeError(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}
void ThrowRangeError(Napi::Env env, const std::string& message) {
  throw Napi::RangeError::New(env, message);
}
void ThrowError(Napi::Env env, const std::string& message) { throw Napi::Error::New(env, message); }

void ThrowIfFailed(Napi::Env env, const Status& s) {
  if (!s.ok) ThrowError(env, s.message.empty() ? std::string("backend call failed") : s.message);
}

std::string NumberText(double d) {
  if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 1e15) return std::to_string(int64_t(d));
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", d);
  return buf;
}

std::string DescribeValue(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "a boolean";
    case napi_number: return "the number " + NumberText(v.As<Napi::Number>().DoubleValue());
    case napi_string: return "a string";
    case napi_symbol: return "a symbol";
    case napi_function: return "a function";
    case napi_bigint: return "a bigint";
    case napi_external: return "an external";
    case napi_object: break;
  }
  if (v.IsTypedArray()) {
    switch (v.As<Napi::TypedArray>().TypedArrayType()) {
      case napi_float32_array: return "a Float32Array";
      case napi_float64_array: return "a Float64Array";
      case napi_uint16_array: return "a Uint16Array";
      case napi_int16_array: return "an Int16Array";
      case napi_uint8_array: return "a Uint8Array";
      case napi_uint8_clamped_array: return "a Uint8ClampedArray";
      case napi_int8_array: return "an Int8Array";
      case napi_int32_array: return "an Int32Array";
      case napi_uint32_array: return "a Uint32Array";
      default: return "a typed array";
    }
  }
  if (v.IsArray()) return "an array";
  if (v.IsArrayBuffer()) return "an ArrayBuffer";
  return "an object";
}

void* ToHandle(Napi::Env env, const Napi::Value& v, const std::string& where) {
  if (!v.IsBigInt()) ThrowTypeError(env, where + " must be a bigint CUDA handle, got " + DescribeValue(v));
  bool lossless = false;
  uint64_t h = v.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless || h == 0) ThrowRangeError(env, where + " must be a non-zero 64-bit unsigned handle");
  return reinterpret_cast<void*>(uintptr_t(h));
}

int64_t ToInt(Napi::Env env, const Napi::Value& v, const std::string& where, int64_t lo, int64_t hi) {
  if (!v.IsNumber()) ThrowTypeError(env, where + " must be a number, got " + DescribeValue(v));
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d) || d < double(lo) || d > double(hi)) {
    ThrowRangeError(env, where + " must be an integer in [" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "], got " + NumberText(d));
  }
  return int64_t(d);
}

int64_t ReadInt(Napi::Env env, const Napi::Object& o, const char* key, const std::string& where,
                int64_t lo, int64_t hi) {
  return ToInt(env, o.Get(key), where, lo, hi);
}

double ReadFiniteNumber(Napi::Env env, const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) ThrowTypeError(env, where + " must be a number, got " + DescribeValue(v));
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) ThrowRangeError(env, where + " must be finite, got " + NumberText(d));
  return d;
}

bool ToBool(Napi::Env env, const Napi::Value& v, const std::string& where) {
  if (!v.IsBoolean()) ThrowTypeError(env, where + " must be a boolean, got " + DescribeValue(v));
  return v.As<Napi::Boolean>().Value();
}

AddonData& GetAddonData(Napi::Env env) {
  AddonData* d = env.GetInstanceData<AddonData>();
  if (!d) ThrowError(env, "monarch addon is not initialised in this environment");
  return *d;
}

Napi::Object ToObject(Napi::Env env, const Napi::Value& v, const std::string& where) {
  if (!v.IsObject() || v.IsTypedArray() || v.IsArray() || v.IsFunction()) {
    ThrowTypeError(env, where + " must be an object, got " + DescribeValue(v));
  }
  return v.As<Napi::Object>();
}

}  // namespace binding
}  // namespace monarch
