// binding_convert.cc — see binding_convert.h.
#include "binding_convert.h"

#include <cstdint>

namespace monarch {
namespace binding {

namespace {

template <typename In, typename Out, typename Fn>
Napi::Value Convert(const Napi::CallbackInfo& info, const char* name, napi_typedarray_type inType,
                    const char* inName, Fn fn) {
  Napi::Env env = info.Env();
  Napi::Value v = info[0];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != inType) {
    ThrowTypeError(env, std::string(name) + ": x must be a " + inName + ", got " + DescribeValue(v));
  }
  auto in = v.As<Napi::TypedArrayOf<In>>();
  const size_t n = in.ElementLength();
  auto out = Napi::TypedArrayOf<Out>::New(env, n);
  const In* src = in.Data();
  Out* dst = out.Data();
  for (size_t i = 0; i < n; ++i) dst[i] = fn(src[i]);
  return out;
}

}  // namespace

Napi::Value F32ToBf16(const Napi::CallbackInfo& info) {
  return Convert<float, uint16_t>(info, "f32ToBf16", napi_float32_array, "Float32Array", f32_to_bf16);
}
Napi::Value Bf16ToF32(const Napi::CallbackInfo& info) {
  return Convert<uint16_t, float>(info, "bf16ToF32", napi_uint16_array, "Uint16Array", bf16_to_f32);
}
Napi::Value F32ToF16(const Napi::CallbackInfo& info) {
  return Convert<float, uint16_t>(info, "f32ToF16", napi_float32_array, "Float32Array", f32_to_f16);
}
Napi::Value F16ToF32(const Napi::CallbackInfo& info) {
  return Convert<uint16_t, float>(info, "f16ToF32", napi_uint16_array, "Uint16Array", f16_to_f32);
}

}  // namespace binding
}  // namespace monarch
