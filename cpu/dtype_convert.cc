// dtype_convert.cc — host-side fp32 ↔ bf16 / fp16 conversion (round to nearest even, NaN kept
// quiet, Inf kept, fp16 subnormals exact). The bit manipulation lives in cpu_common.h so the CPU
// backend's inner loops inline it; these are the exported entry points of monarch.h.
#include "common.h"

namespace monarch {

uint16_t f32_to_bf16(float x) { return cpu::detail::float_to_bf16(x); }
float bf16_to_f32(uint16_t x) { return cpu::detail::bf16_to_float(x); }
uint16_t f32_to_f16(float x) { return cpu::detail::float_to_f16(x); }
float f16_to_f32(uint16_t x) { return cpu::detail::f16_to_float(x); }

}  // namespace monarch
