// binding_convert.h — host dtype conversions exposed to JS (f32ToBf16, bf16ToF32, f32ToF16, f16ToF32):
// a new typed array out, round to nearest even, NaN preserved (monarch::f32_to_bf16 & co.).
#pragma once

#include "binding_common.h"

namespace monarch {
namespace binding {

Napi::Value F32ToBf16(const Napi::CallbackInfo& info);
Napi::Value Bf16ToF32(const Napi::CallbackInfo& info);
Napi::Value F32ToF16(const Napi::CallbackInfo& info);
Napi::Value F16ToF32(const Napi::CallbackInfo& info);

}  // namespace binding
}  // namespace monarch
