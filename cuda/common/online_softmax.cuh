// online_softmax.cuh — the streaming softmax state of one thread's two rows (g and g+8 of its warp's
// 16-row tile; see mma_utils.cuh for the fragment layout), with the optional online-entropy
// accumulator of docs/ALGORITHMS.md §C.3 in its shifted, base-2 form:
//   logits t = x·log2(e) (masked: −INF; a visible key's non-finite logit: NaN, visible_logit below),
//   running max m, ℓ = Σ 2^(t−m), ũ = Σ 2^(t−m)·(t−m)
//   per tile: m' = max(m, max t_B), α = 2^(m−m'), p = 2^(t_B−m'),
//             ũ ← α·(ũ + (m−m')·ℓ) + Σ p·(t_B−m'),  ℓ ← α·ℓ + Σ p
//   finalise: log2 Z = m + log2 ℓ,  Σ p log p = (ũ/ℓ − log2 ℓ)·ln 2   (natural units)
// ℓ and ũ are per-thread partial sums over this thread's columns (the max is shared by the quad);
// finalize() adds them over the quad. A row that has seen only masked keys keeps m = −INF, ℓ = ũ = 0
// (empty: outputs 0, lse −INF); one NaN logit makes p, ℓ and the row's accumulators NaN for good.
#pragma once

#include "mma_utils.cuh"

namespace monarch {
namespace cuda {
namespace detail {

// The state both streaming softmaxes share (this one and LazySoftmax in dense_softmax.cuh): per row
// h ∈ {g, g+8} the reference max m (base 2), ℓ and ũ as per-thread partial sums over this thread's
// columns until finalize() adds them over the quad; then the LSE and Σ p log p in natural units.
// The CPU's non-finite rule (cpu/softmax.h) for the logit x of a visible key: NaN, ±Inf (an Inf input, or a
// q·k or s·scale that overflows float32) poisons the row, so x becomes NaN, which then reaches p, ℓ, the
// accumulators and every output of the row; a finite x is returned bit-exactly (x·0 + x = x). One FFMA,
// in inline PTX so that no compiler folds x·0 + x to x. Masked keys keep −INF (weight 0) and never pass here.
__device__ __forceinline__ float visible_logit(float x) {
  float y;
  asm("fma.rn.f32 %0, %1, 0f00000000, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

constexpr float kNaN = __builtin_nanf("");

template <bool kEntropy>
struct SoftmaxRows {
  float m[2], l[2], u[2];

  __device__ __forceinline__ void init() {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      m[h] = -INFINITY;
      l[h] = 0.f;
      u[h] = 0.f;
    }
  }

  __device__ __forceinline__ void finalize() {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      l[h] = quad_sum(l[h]);
      if (kEntropy) u[h] = quad_sum(u[h]);
    }
  }

  // After finalize(): natural-log LSE (−INF for an empty row) and Σ p log p (≤ 0; 0 for an empty row);
  // both NaN when the row saw a NaN logit (ℓ is NaN then), as the CPU backend.
  __device__ __forceinline__ float lse(int h) const {
    return l[h] <= 0.f ? -INFINITY : (m[h] + log2f(l[h])) * kLn2;  // NaN ℓ (a NaN logit) stays NaN
  }
  __device__ __forceinline__ float neg_entropy(int h) const {
    return l[h] <= 0.f ? 0.f : (u[h] / l[h] - log2f(l[h])) * kLn2;
  }
  // neg_entropy with the row's 1/ℓ already at hand (invL) and the hardware log2 (lg2.approx: absolute
  // error ≈ 2^-22 over ℓ in [1, 2^24]; ℓ ≥ 1 whenever a key is visible, the row's largest term being 1):
  // no division, no software logarithm. For the sm_90a R-steps, whose tile of 64 keys computes this for
  // every (row, tile).
  __device__ __forceinline__ float neg_entropy_fast(int h, float invL) const {
    return l[h] <= 0.f ? 0.f : (u[h] * invL - __log2f(l[h])) * kLn2;
  }
};

template <int NK, bool kEntropy>
struct OnlineSoftmax : SoftmaxRows<kEntropy> {
  using SoftmaxRows<kEntropy>::m;
  using SoftmaxRows<kEntropy>::l;
  using SoftmaxRows<kEntropy>::u;

  // t: this tile's base-2 logits (C-fragment layout, 16 × NK per warp), replaced by p = 2^(t − m').
  // alpha: the factor by which accumulators of earlier tiles must be rescaled.
  __device__ __forceinline__ void update(float (&t)[NK / 8][4], float (&alpha)[2]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < NK / 8; ++n) mx = fmaxf(mx, fmaxf(t[n][2 * h], t[n][2 * h + 1]));
      mx = quad_max(mx);
      const float mNew = fmaxf(m[h], mx);
      const float mUse = mNew == -INFINITY ? 0.f : mNew;  // keeps 2^(−INF − mUse) = 0, never NaN
      const float a = fast_exp2(m[h] - mUse);
      float rs = 0.f, ru = 0.f;
#pragma unroll
      for (int n = 0; n < NK / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float x = t[n][2 * h + e];
          const float p = fast_exp2(x - mUse);
          rs += p;
          if (kEntropy) ru += p * fmaxf(x - mUse, -1e30f);  // masked: p = 0 times a finite value
          t[n][2 * h + e] = p;
        }
      }
      if (kEntropy) u[h] = a * (u[h] + (m[h] == -INFINITY ? 0.f : (m[h] - mUse) * l[h])) + ru;
      l[h] = a * l[h] + rs;
      m[h] = mNew;
      alpha[h] = a;
    }
  }

  // init() then update() in one (a single tile: the R-steps' plain softmax), with shorter dependency
  // chains: a tree for the row max, two partial sums per row. Same values as update() but for the
  // order of the sums.
  __device__ __forceinline__ void first(float (&t)[NK / 8][4]) {
    constexpr int kN = NK / 8;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float v[kN];
#pragma unroll
      for (int n = 0; n < kN; ++n) v[n] = fmaxf(t[n][2 * h], t[n][2 * h + 1]);
#pragma unroll
      for (int w = 1; w < kN; w *= 2) {
#pragma unroll
        for (int n = 0; n + w < kN; n += 2 * w) v[n] = fmaxf(v[n], v[n + w]);
      }
      const float mx = quad_max(v[0]);
      const float mUse = mx == -INFINITY ? 0.f : mx;  // keeps 2^(−INF − mUse) = 0, never NaN
      float rs[2] = {0.f, 0.f}, ru[2] = {0.f, 0.f};
#pragma unroll
      for (int n = 0; n < kN; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float x = t[n][2 * h + e] - mUse;
          const float p = fast_exp2(x);
          rs[n & 1] += p;
          if (kEntropy) ru[n & 1] += p * fmaxf(x, -1e30f);  // masked: p = 0 times a finite value
          t[n][2 * h + e] = p;
        }
      }
      m[h] = mx;
      l[h] = rs[0] + rs[1];
      u[h] = kEntropy ? ru[0] + ru[1] : 0.f;
    }
  }

  // For callers whose masked entries are −INF by construction (the L-steps: u = s·⟨q, aL⟩ − cL with
  // cL = +INF), where a visible entry's −Inf logit cannot be told from a masked one after the fact:
  // mn[h] is the smallest raw score s of row h among this thread's entries of the tile, scale2 > 0 its
  // scale; when mn·scale2 = −Inf (a −Inf score, or an overflowing s·scale2) the row is poisoned — one p
  // of this thread's row (the P·V product spreads it over the whole output row) and ℓ become NaN. NaN
  // and +Inf logits poison the row by themselves in update(). One FMNMX per score for the caller.
  __device__ __forceinline__ void poison_neg_inf(float (&p)[NK / 8][4], const float (&mn)[2], float scale2) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      if (mn[h] * scale2 == -INFINITY) p[0][2 * h] = l[h] = kNaN;
    }
  }
};

// The final L-steps' logits of a tile of NK candidates (C-fragment layout, 16 × NK per warp): S = s·⟨q, aL⟩
// becomes u = S·scale2 − bias2(c), c = 8n + 2·qd + e the tile column, bias2(c) the candidate's cL·log2(e)
// (+INF for padding or a masked candidate); mn[h] gets the smallest raw score of row h among this thread's
// entries, for OnlineSoftmax::poison_neg_inf.
template <int NK, typename Bias2>
__device__ __forceinline__ void biased_logits(float (&S)[NK / 8][4], float (&mn)[2], float scale2, int qd,
                                              Bias2 bias2) {
  mn[0] = mn[1] = INFINITY;
#pragma unroll
  for (int n = 0; n < NK / 8; ++n) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const float bias = bias2(n * 8 + 2 * qd + e);
      mn[0] = fminf(mn[0], S[n][e]);
      mn[1] = fminf(mn[1], S[n][e + 2]);
      S[n][e] = S[n][e] * scale2 - bias;
      S[n][e + 2] = S[n][e + 2] * scale2 - bias;
    }
  }
}

template <int D>
__device__ __forceinline__ void rescale_rows(float (&O)[D / 8][4], const float (&alpha)[2]) {
#pragma unroll
  for (int n = 0; n < D / 8; ++n) {
    O[n][0] *= alpha[0];
    O[n][1] *= alpha[0];
    O[n][2] *= alpha[1];
    O[n][3] *= alpha[1];
  }
}

template <int D>
__device__ __forceinline__ void zero_acc(float (&O)[D / 8][4]) {
#pragma unroll
  for (int n = 0; n < D / 8; ++n) O[n][0] = O[n][1] = O[n][2] = O[n][3] = 0.f;
}

}  // namespace detail
}  // namespace cuda
}  // namespace monarch
