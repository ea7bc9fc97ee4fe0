// softmax.h — the online-softmax recurrence of the CPU backend (§C.3, shifted form), written once
// for cpu/dense.cc, cpu/r_step.cc and cpu/l_step.cc. Per row: running max m, ℓ = Σ e^{x−m} and,
// with the entropy, ũ = Σ e^{x−m}(x−m); the caller owns its weighted accumulators (Σ e^{x−m}·v …)
// and is handed the rescale factor α and each weight e^{x−m} through callbacks.
// Rules (the reference of the whole project; the CUDA kernels follow them):
//   - a logit of −∞ is a masked entry and weighs 0 — but only where the caller says −∞ is legitimate
//     (l_step: an R row with no valid key, cL = +INF); any other non-finite logit (NaN, ±Inf, an
//     overflowing q·k) poisons the row for good: it stops accumulating and finalises to NaN;
//   - a row that saw no entry (m = −∞ or ℓ = 0) is empty: 0 outputs, lse −INF, entropy 0 (cL +INF).
#pragma once

#include <algorithm>
#include <cmath>

#include "common.h"

namespace monarch {
namespace cpu {
namespace detail {

// How a row ends (finalise with the matching rule).
enum class RowEnd { kNaN, kEmpty, kValue };

struct SoftmaxRow {
  float m = -kInf;   // running max of the logits seen
  float l = 0.f;     // ℓ = Σ e^{x−m}
  float u = 0.f;     // ũ = Σ e^{x−m}(x−m) (kept only with the entropy)
  bool bad = false;  // met a non-finite logit → NaN outputs

  void reset() { *this = SoftmaxRow{}; }

  // Max of one tile of logits x[0..n); flags the row when a logit is non-finite, except a −∞ for
  // which negInfOk(c) holds (a masked entry).
  template <typename NegInfOk>
  float scan(const float* x, int n, NegInfOk&& negInfOk) {
    float mx = -kInf;
    for (int c = 0; c < n; ++c) {
      const float xc = x[c];
      if (std::isnan(xc) || xc == kInf || (xc == -kInf && !negInfOk(c))) bad = true;
      mx = std::max(mx, xc);
    }
    return mx;
  }
  // scan() where every logit must be finite (dense, R-step: masked keys are compacted away).
  float scan(const float* x, int n) {
    return scan(x, n, [](int) { return false; });
  }

  // Folds one scanned tile (max mx) into the row: rescales to the new max (rescale(α) on the
  // caller's accumulators, ũ ← α(ũ + (m − m')ℓ), ℓ ← αℓ), then adds every finite entry with its
  // weight p = e^{x−m'} (ℓ += p, ũ += p(x − m'), add(c, p)). A poisoned row or an all-masked tile
  // changes nothing.
  template <bool kEntropy, typename Rescale, typename Add>
  void fold(const float* x, int n, float mx, Rescale&& rescale, Add&& add) {
    if (bad || mx == -kInf) return;
    const float mNew = std::max(m, mx);
    if (m != -kInf && mNew != m) {
      const float alpha = std::exp(m - mNew);
      if (kEntropy) u = alpha * (u + (m - mNew) * l);
      l *= alpha;
      rescale(alpha);
    }
    float lr = l, ur = u;
    for (int c = 0; c < n; ++c) {
      if (x[c] == -kInf) continue;
      const float xm = x[c] - mNew;
      const float pc = std::exp(xm);
      lr += pc;
      if (kEntropy) ur += pc * xm;
      add(c, pc);
    }
    l = lr; u = ur; m = mNew;
  }

  RowEnd end() const { return bad ? RowEnd::kNaN : (m == -kInf || !(l > 0.f)) ? RowEnd::kEmpty : RowEnd::kValue; }

  // kValue rows only. lse = m + log ℓ (natural log of the scaled logits).
  float lse() const { return m + std::log(l); }
  // −Σ p log p = log ℓ − ũ/ℓ, clamped at 0 (dense's entropy output).
  float entropy() const { return std::max(0.f, std::log(l) - u / l); }
  // Σ p log p = ũ·inv − log ℓ with inv = 1/ℓ, the factor the caller normalises by (R-step's cL; the
  // two forms are kept as the reference has always rounded them).
  float sum_p_log_p(float inv) const { return u * inv - std::log(l); }
};

}  // namespace detail
}  // namespace cpu
}  // namespace monarch
