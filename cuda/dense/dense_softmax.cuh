// dense_softmax.cuh — the dense kernel's streaming softmax state (one thread's two rows g, g+8 of a
// 16-row m-tile; fragment layout in mma_utils.cuh) with lazy rescaling and the scale folded into exp2.
// Same base-2 recurrence and outputs as OnlineSoftmax (online_softmax.cuh, docs/ALGORITHMS.md §C.3):
//   ℓ = Σ 2^(t−m), ũ = Σ 2^(t−m)·(t−m), finalise log2 Z = m + log2 ℓ, Σ p log p = (ũ/ℓ − log2 ℓ)·ln 2,
// which hold for ANY reference m, not only the running max. So m is moved (and the accumulators
// rescaled by α = 2^(m−m')) only when some row of the warp sees a tile max above m + kLazyThreshold;
// otherwise p = 2^(t−m) ≤ 2^kLazyThreshold = 256 (safe in fp16/bf16 and fp32 sums) and the O
// rescale (D/2 FMUL per thread per m-tile) is skipped — after the first few key tiles that is almost
// always (FlashAttention-4's conditional rescaling). The decision is warp-uniform (__any_sync).
// Fused path (unmasked tile, scale2 > 0): t = s·scale2 never materialises; max is taken on raw s and
// p = 2^(fma(s, scale2, −m)), with ũ += p·(t−m) as one FMA on the exponent already in a register.
// Non-finite logits (the CPU's rule, cpu/softmax.h): NaN and +Inf make p NaN by themselves; a −Inf
// logit (a −Inf score, or s·scale2 overflowing) would give p = 0, so the fused path also takes the
// min of raw s (one FMNMX per score) and, when min·scale2 = −Inf, sets one p of that row to NaN: the
// P·V product spreads it to the whole output row, ℓ to lse and entropy. The masked path gets its
// logits through visible_logit (online_softmax.cuh): a visible key's non-finite logit is NaN there.
#pragma once

#include "../common/online_softmax.cuh"  // SoftmaxRows

namespace monarch {
namespace cuda {
namespace detail {

constexpr float kLazyThreshold = 8.f;  // log2 units: p ≤ 256 between rescales
constexpr float kFusedMaxLogit = 4194304.f;  // 2^22 (log2 units): see update<true>

template <int NK, bool kEntropy>
struct LazySoftmax : SoftmaxRows<kEntropy> {
  using SoftmaxRows<kEntropy>::m;
  using SoftmaxRows<kEntropy>::l;
  using SoftmaxRows<kEntropy>::u;

  // s: this tile's scores. kFused: raw S (no scale) of visible keys only, and scale2 > 0; otherwise
  // base-2 logits already scaled, masked ones −INF, a visible key's non-finite one NaN
  // (visible_logit). Replaced by p = 2^(t − m). Returns true (warp-uniform) when m moved: then alpha
  // holds the factor for the earlier accumulators (O must be rescaled).
  template <bool kFused>
  __device__ __forceinline__ bool update(float (&s)[NK / 8][4], float scale2, float (&alpha)[2]) {
    float mx[2];
    bool poison[2];  // fused: this thread saw a −Inf logit in row h (NaN / +Inf poison by themselves)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float v = -INFINITY, mn = INFINITY;
#pragma unroll
      for (int n = 0; n < NK / 8; ++n) {
        v = fmaxf(v, fmaxf(s[n][2 * h], s[n][2 * h + 1]));
        if (kFused) mn = fminf(mn, fminf(s[n][2 * h], s[n][2 * h + 1]));
      }
      poison[h] = kFused && mn * scale2 == -INFINITY;
      v = quad_max(v);
      mx[h] = kFused ? v * scale2 : v;
    }
    if (kFused) {
      // The folded exponent fma(s, scale2, −m) is exact, but m = round(max·scale2) is not: the residual
      // (≤ half an ulp of m) stays below 1 only while |m| < 2^22. Past that (huge logits: scale or
      // inputs near the float32 range) the tile takes the exact path on t = s·scale2 (rare, warp-uniform).
      const bool huge = fabsf(mx[0]) > kFusedMaxLogit || fabsf(mx[1]) > kFusedMaxLogit ||
                        fabsf(m[0]) > kFusedMaxLogit || fabsf(m[1]) > kFusedMaxLogit;
      if (__any_sync(0xffffffffu, huge)) {
#pragma unroll
        for (int n = 0; n < NK / 8; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) s[n][e] = visible_logit(s[n][e] * scale2);
        return update<false>(s, scale2, alpha);
      }
    }
    const bool need = mx[0] > m[0] + kLazyThreshold || mx[1] > m[1] + kLazyThreshold;
    const bool moved = __any_sync(0xffffffffu, need);
    if (moved) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float mNew = fmaxf(m[h], mx[h]);
        const float mUse = mNew == -INFINITY ? 0.f : mNew;  // keeps 2^(−INF − mUse) = 0, never NaN
        const float a = fast_exp2(m[h] - mUse);
        if (kEntropy) u[h] = a * (u[h] + (m[h] == -INFINITY ? 0.f : (m[h] - mUse) * l[h]));
        l[h] *= a;
        m[h] = mNew;
        alpha[h] = a;
      }
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float mUse = m[h] == -INFINITY ? 0.f : m[h];
      float rs = 0.f, ru = 0.f;
#pragma unroll
      for (int n = 0; n < NK / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float x = s[n][2 * h + e];
          float arg;
          if (kFused) arg = fmaf(x, scale2, -mUse);
          else arg = x - mUse;
          const float p = fast_exp2(arg);
          rs += p;
          if (kEntropy) ru = fmaf(p, kFused ? arg : fmaxf(arg, -1e30f), ru);  // masked: p = 0 × finite
          s[n][2 * h + e] = p;
        }
      }
      if (kFused && poison[h]) s[0][2 * h] = rs = kNaN;
      l[h] += rs;
      if (kEntropy) u[h] += ru;
    }
    return moved;
  }
};


// A masked key tile (key tail, causal edge, keyValid, or scale2 ≤ 0) in place: base-2 logits
// s·scale2, −INF for keys the row may not see, NaN for a visible key's non-finite logit
// (visible_logit). col0: the tile's first key; lim: the key limit of this thread's rows g and g+8;
// kv: the batch row's keyValid or null. Shared by both dense kernels.
// kBias (dense_hopper_biased): a visible key's logit is visible_logit(s·scale2) − bias, bias in base-2
// units at bias2[n·2 + (e & 1)] (key col0 + n·8 + 2·qd + (e & 1)). A bias of +INF makes it −INF (masked,
// as the L-step's cL = +INF); a non-finite score is NaN before the bias, so it poisons the row whatever
// the bias is (the L-step's rule, l_step_config.cuh).
template <int NK, bool kBias = false>
__device__ __forceinline__ void mask_scale_tile(float (&s)[NK / 8][4], int col0, int qd, const int (&lim)[2],
                                                const uint8_t* kv, float scale2, const float* bias2 = nullptr) {
#pragma unroll
  for (int n = 0; n < NK / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int c = col0 + n * 8 + 2 * qd + (e & 1);
      const bool ok = c < lim[e >> 1] && (kv == nullptr || kv[c] != 0);
      if constexpr (kBias) s[n][e] = ok ? visible_logit(s[n][e] * scale2) - bias2[n * 2 + (e & 1)] : -INFINITY;
      else s[n][e] = ok ? visible_logit(s[n][e] * scale2) : -INFINITY;
    }
}

// After finalize(): the per-row outputs of rows row0 + g and row0 + g + 8 (lane qd == 0 of each
// quad writes): lse, and the entropy (≥ 0, as the CPU; NaN stays NaN). Shared by both dense kernels.
template <int NK, bool kEntropy>
__device__ __forceinline__ void store_row_stats(const LazySoftmax<NK, kEntropy>& sm, const DenseParams& p, int b, int h,
                                                int row0, int g, int qd) {
  if (qd != 0) return;
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int row = row0 + g + 8 * hh;
    if (row >= p.Nq) continue;
    const int64_t idx = (int64_t(b) * p.H + h) * p.Nq + row;
    if (p.lse) p.lse[idx] = sm.lse(hh);
    if (kEntropy && p.entropy) {
      const float ne = sm.neg_entropy(hh);
      p.entropy[idx] = ne != ne ? ne : fmaxf(0.f, -ne);
    }
  }
}

}  // namespace detail
}  // namespace cuda
}  // namespace monarch
