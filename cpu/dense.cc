// cpu_dense.cc — monarch::cpu::dense: dense softmax attention streamed over key tiles of kTile
// with the §C.3 recurrence (running max m, ℓ = Σ e^{x−m}, ũ = Σ e^{x−m}(x−m), acc = Σ e^{x−m} v).
// Per row: lse = m + log ℓ (natural log of the scaled logits), entropy = log ℓ − ũ/ℓ (= −Σ p log p).
// Masks: keyValid [B][Nk]; block-causal: query p = q0 + n sees keys [0, (p / C + 1)·C).
// A row with no visible key outputs 0, lse = −INF, entropy = 0. A row with a non-finite scaled logit
// (NaN or ±Inf inputs, or a q·k that overflows float32) outputs NaN (out, lse, entropy): never zeros.
#include <algorithm>
#include <cmath>
#include <vector>

#include "common.h"
#include "threads.h"

namespace monarch {
namespace cpu {

using namespace detail;

Status dense(const DenseParams& p) {
  const char* stage = "dense";
  if (!valid_dtype(p.dtype))
    return Status::Error("dense: unsupported dtype code " + std::to_string(int(p.dtype)) + ".");
  std::string e = dims_error(stage, p.B, p.H, p.D);
  if (!e.empty()) return Status::Error(e);
  if (p.Nq < 0 || p.Nk < 0)
    return Status::Error("dense: Nq and Nk must be >= 0, got Nq = " + std::to_string(p.Nq) +
                         ", Nk = " + std::to_string(p.Nk) + ".");
  if (p.q0 < 0) return Status::Error("dense: q0 must be >= 0, got " + std::to_string(p.q0) + ".");
  if (!p.q.data) return Status::Error(null_error(stage, "q.data"));
  if (!p.o.data) return Status::Error(null_error(stage, "o.data"));
  if (p.Nk > 0 && !p.k.data) return Status::Error(null_error(stage, "k.data"));
  if (p.Nk > 0 && !p.v.data) return Status::Error(null_error(stage, "v.data"));

  const int D = p.D;
  const int nQB = (p.Nq + kTile - 1) / kTile;
  const int64_t items = int64_t(p.B) * p.H * nQB;
  const float s = p.scale;
  const int64_t C = p.causalChunk;

  return parallel_for(stage, items, [&](int64_t begin, int64_t end) {
    std::vector<float> Q(size_t(kTile) * D);    // [query rows][D]
    std::vector<float> Kt(size_t(kTile) * D);   // [valid keys][D] (compacted)
    std::vector<float> Vt(size_t(kTile) * D);   // [valid keys][D]
    std::vector<float> acc(size_t(kTile) * D);  // [query rows][D]
    std::vector<float> m(kTile), l(kTile), u(kTile), x(kTile);
    std::vector<char> bad(kTile);  // the row met a non-finite logit
    std::vector<int64_t> lim(kTile), key(kTile);

    for (int64_t it = begin; it < end; ++it) {
      const int qb = int(it % nQB);
      const int h = int((it / nQB) % p.H);
      const int b = int(it / nQB / p.H);
      const int n0 = qb * kTile, nq = std::min(kTile, p.Nq - n0);

      int64_t limMax = 0;
      for (int r = 0; r < nq; ++r) {
        load_row(p.dtype, p.q.data, act_off(p.q, b, n0 + r, h), D, &Q[size_t(r) * D]);
        const int64_t pos = int64_t(p.q0) + n0 + r;
        lim[r] = C > 0 ? std::min<int64_t>(p.Nk, (pos / C + 1) * C) : p.Nk;  // visible keys [0, lim)
        limMax = std::max(limMax, lim[r]);
        m[r] = -kInf; l[r] = 0.f; u[r] = 0.f; bad[r] = 0;
      }
      std::fill(acc.begin(), acc.begin() + size_t(nq) * D, 0.f);

      for (int64_t l0 = 0; l0 < limMax; l0 += kTile) {
        const int nl = int(std::min<int64_t>(kTile, limMax - l0));
        int nv = 0;
        for (int ll = 0; ll < nl; ++ll) {
          const int64_t t = l0 + ll;
          if (p.keyValid && !p.keyValid[int64_t(b) * p.Nk + t]) continue;
          load_row(p.dtype, p.k.data, act_off(p.k, b, t, h), D, &Kt[size_t(nv) * D]);
          load_row(p.dtype, p.v.data, act_off(p.v, b, t, h), D, &Vt[size_t(nv) * D]);
          key[nv++] = t;
        }
        for (int r = 0; r < nq; ++r) {
          // Valid keys are in increasing order: the row sees the prefix key[c] < lim[r].
          int nr = 0;
          while (nr < nv && key[nr] < lim[r]) ++nr;
          if (nr == 0 || bad[r]) continue;
          const float* qr = &Q[size_t(r) * D];
          float mx = -kInf;
          for (int c = 0; c < nr; ++c) {
            x[c] = s * dot(qr, &Kt[size_t(c) * D], D);
            if (!std::isfinite(x[c])) bad[r] = 1;
            mx = std::max(mx, x[c]);
          }
          if (bad[r]) continue;
          float* ar = &acc[size_t(r) * D];
          const float mNew = std::max(m[r], mx);
          if (m[r] != -kInf && mNew != m[r]) {
            const float alpha = std::exp(m[r] - mNew);
            u[r] = alpha * (u[r] + (m[r] - mNew) * l[r]);
            l[r] *= alpha;
            scal(alpha, ar, D);
          }
          float lr = l[r], ur = u[r];
          for (int c = 0; c < nr; ++c) {
            const float xm = x[c] - mNew;
            const float pc = std::exp(xm);
            lr += pc;
            ur += pc * xm;
            axpy(pc, &Vt[size_t(c) * D], ar, D);
          }
          l[r] = lr; u[r] = ur; m[r] = mNew;
        }
      }

      for (int r = 0; r < nq; ++r) {
        const int64_t row = (int64_t(b) * p.H + h) * p.Nq + n0 + r;  // lse / entropy [B][H][Nq]
        float* ar = &acc[size_t(r) * D];
        if (bad[r]) {
          std::fill(ar, ar + D, kNaN);
          store_row(p.dtype, p.o.data, act_off(p.o, b, n0 + r, h), D, ar);
          if (p.lse) p.lse[row] = kNaN;
          if (p.entropy) p.entropy[row] = kNaN;
          continue;
        }
        const bool empty = m[r] == -kInf || !(l[r] > 0.f);
        if (empty) std::fill(ar, ar + D, 0.f);
        else scal(1.f / l[r], ar, D);
        store_row(p.dtype, p.o.data, act_off(p.o, b, n0 + r, h), D, ar);
        if (p.lse) p.lse[row] = empty ? -kInf : m[r] + std::log(l[r]);
        if (p.entropy) p.entropy[row] = empty ? 0.f : std::max(0.f, std::log(l[r]) - u[r] / l[r]);
      }
    }
  });
}

}  // namespace cpu
}  // namespace monarch
