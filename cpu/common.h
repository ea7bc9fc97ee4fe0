// common.h — helpers shared by the CPU backend (cpu/*.cc): dtype load/store (fp32
// accumulation, round-to-nearest-even stores), activation stride arithmetic, small vector kernels
// and the parameter checks every stage repeats. Header-only so the inner loops inline.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include <monarch/monarch.h>

namespace monarch {
namespace cpu {
namespace detail {

// Key / candidate tile length of the streaming loops (§C.3), the same tile a GPU kernel would use.
constexpr int kTile = 64;
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();  // poisoned rows (non-finite logits)

// ---- dtype bit conversions (round to nearest even; NaN stays NaN, quiet) ----------------------

inline uint32_t f32_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float bits_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

inline float bf16_to_float(uint16_t h) { return bits_f32(uint32_t(h) << 16); }

inline uint16_t float_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);  // NaN: keep sign, quiet
  x += 0x7fffu + ((x >> 16) & 1u);                                          // RNE (Inf stays Inf)
  return uint16_t(x >> 16);
}

inline float f16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {  // zero / subnormal: m · 2^-24 (exact in fp32)
    const float v = float(m) * 5.9604644775390625e-8f;
    return bits_f32(f32_bits(v) | sign);
  }
  if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));  // Inf / NaN (payload kept)
  return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

inline uint16_t float_to_f16(float f) {
  const uint32_t x = f32_bits(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u)  // Inf, or NaN (quiet, top payload bits kept)
    return uint16_t(sign | 0x7c00u | (ax > 0x7f800000u ? (0x200u | ((ax >> 13) & 0x3ffu)) : 0u));
  if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // ≥ 65520 rounds to Inf
  if (ax < 0x38800000u) {                                   // below 2^-14: fp16 subnormal or zero
    const uint32_t e = ax >> 23;
    if (e < 102) return sign;                               // < 2^-25 (2^-25 itself ties to 0)
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;        // value = m · 2^(e-150)
    const uint32_t shift = 126 - e;                         // in units of 2^-24: m >> shift
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;       // may carry into the min normal: correct
    return uint16_t(sign | r);
  }
  uint32_t r = (ax - 0x38000000u) >> 13;  // rebias 127 → 15, drop 13 mantissa bits
  const uint32_t rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return uint16_t(sign | r);
}

// ---- element / row access --------------------------------------------------------------------

// Reads n consecutive elements starting at element offset `off` of `base` into fp32.
inline void load_row(DType t, const void* base, int64_t off, int64_t n, float* out) {
  if (t == kF32) {
    std::memcpy(out, static_cast<const float*>(base) + off, size_t(n) * 4);
  } else if (t == kF16) {
    const uint16_t* s = static_cast<const uint16_t*>(base) + off;
    for (int64_t d = 0; d < n; ++d) out[d] = f16_to_float(s[d]);
  } else {
    const uint16_t* s = static_cast<const uint16_t*>(base) + off;
    for (int64_t d = 0; d < n; ++d) out[d] = bf16_to_float(s[d]);
  }
}

// Writes n fp32 values to element offset `off` of `base`, rounding to the storage dtype.
inline void store_row(DType t, void* base, int64_t off, int64_t n, const float* in) {
  if (t == kF32) {
    std::memcpy(static_cast<float*>(base) + off, in, size_t(n) * 4);
  } else if (t == kF16) {
    uint16_t* d = static_cast<uint16_t*>(base) + off;
    for (int64_t i = 0; i < n; ++i) d[i] = float_to_f16(in[i]);
  } else {
    uint16_t* d = static_cast<uint16_t*>(base) + off;
    for (int64_t i = 0; i < n; ++i) d[i] = float_to_bf16(in[i]);
  }
}

// Writes n zeros (all three dtypes encode +0 as all-zero bits).
inline void zero_row(DType t, void* base, int64_t off, int64_t n) {
  std::memset(static_cast<char*>(base) + off * int64_t(dtype_size(t)), 0, size_t(n) * dtype_size(t));
}

// Element offset of row (b, s, h) of a [B][S][H][D] activation view.
inline int64_t act_off(const Act& a, int64_t b, int64_t s, int64_t h) {
  return b * a.sB + s * a.sS + h * a.sH;
}

// ---- small vector kernels (contiguous, vectorisable) -----------------------------------------

inline float dot(const float* __restrict a, const float* __restrict b, int n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
  int d = 0;
  for (; d + 8 <= n; d += 8) {
    s0 += a[d] * b[d];         s1 += a[d + 1] * b[d + 1];
    s2 += a[d + 2] * b[d + 2]; s3 += a[d + 3] * b[d + 3];
    s4 += a[d + 4] * b[d + 4]; s5 += a[d + 5] * b[d + 5];
    s6 += a[d + 6] * b[d + 6]; s7 += a[d + 7] * b[d + 7];
  }
  for (; d < n; ++d) s0 += a[d] * b[d];
  return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
}

inline void axpy(float a, const float* __restrict x, float* __restrict y, int n) {
  for (int d = 0; d < n; ++d) y[d] += a * x[d];
}

inline void scal(float a, float* y, int n) {
  for (int d = 0; d < n; ++d) y[d] *= a;
}

// ---- validation (messages name the stage and the field) --------------------------------------

inline bool valid_dtype(DType t) { return t == kF32 || t == kF16 || t == kBF16; }

inline std::string dims_error(const char* stage, int B, int H, int D) {
  if (B <= 0) return std::string(stage) + ": B must be positive, got " + std::to_string(B) + ".";
  if (H <= 0) return std::string(stage) + ": H must be positive, got " + std::to_string(H) + ".";
  if (D <= 0) return std::string(stage) + ": D must be positive, got " + std::to_string(D) + ".";
  return {};
}

inline std::string null_error(const char* stage, const char* what) {
  return std::string(stage) + ": " + what + " is a null pointer.";
}

}  // namespace detail
}  // namespace cpu
}  // namespace monarch

namespace monarch {
namespace cpu {
namespace detail {

// Geometry checks shared by r_step and l_step; empty string when the params are usable.
inline std::string monarch_geometry_error(const MonarchParams& p, const char* stage) {
  const std::string s(stage);
  if (!valid_dtype(p.dtype)) return s + ": unsupported dtype code " + std::to_string(int(p.dtype)) + ".";
  std::string e = dims_error(stage, p.B, p.H, p.D);
  if (!e.empty()) return e;
  if (p.b1 <= 0 || p.b2 <= 0)
    return s + ": tile sizes b1, b2 must be positive, got b1 = " + std::to_string(p.b1) +
           ", b2 = " + std::to_string(p.b2) + ".";
  if (p.Aq <= 0) return s + ": Aq (query tiles) must be positive, got " + std::to_string(p.Aq) + ".";
  if (p.Fk <= 0) return s + ": Fk (key tiles) must be positive, got " + std::to_string(p.Fk) + ".";
  if (p.qTile0 < 0) return s + ": qTile0 must be >= 0, got " + std::to_string(p.qTile0) + ".";
  return {};
}

// Flat index of (b, h, a, f) in the [B][H][Aq][Fk] prefix of every workspace buffer.
inline int64_t pair_index(const MonarchParams& p, int64_t b, int64_t h, int64_t a, int64_t f) {
  return ((b * p.H + h) * p.Aq + a) * p.Fk + f;
}

}  // namespace detail
}  // namespace cpu
}  // namespace monarch
