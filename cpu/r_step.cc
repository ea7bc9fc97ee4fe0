// cpu_r_step.cc — monarch::cpu::r_step: the tiled-Monarch R-step with fused online entropy
// (§A.2 R-step, §B.3, §C.3). For every allowed pair (a, f) and key row k it is a small attention:
// queries aR[a,f,k,:] (b2 rows, temperature invT), keys = values = row k of key tile f (b2 keys),
// plus V on the last step. Keys are streamed in tiles of kTile with the §C.3 recurrence in its
// shifted form (running max m, ℓ = Σ e^{x−m}, ũ = Σ e^{x−m}(x−m), accK, accV), exactly as the GPU
// kernel does — never a two-pass softmax.
#include <algorithm>
#include <cmath>
#include <vector>

#include "common.h"
#include "threads.h"

namespace monarch {
namespace cpu {

using namespace detail;

Status r_step(const MonarchParams& p, bool first, bool last) {
  const char* stage = "r_step";
  std::string e = monarch_geometry_error(p, stage);
  if (!e.empty()) return Status::Error(e);
  if (first && !p.q.data) return Status::Error(null_error(stage, "q.data"));
  if (!p.k.data) return Status::Error(null_error(stage, "k.data"));
  if (last && !p.v.data) return Status::Error(null_error(stage, "v.data (last step)"));
  if (!first && !p.aR) return Status::Error(null_error(stage, "aR (non-first step)"));
  if (!first && !p.cR) return Status::Error(null_error(stage, "cR (non-first step)"));
  if (!p.aL) return Status::Error(null_error(stage, "aL"));
  if (!p.cL) return Status::Error(null_error(stage, "cL"));
  if (last && !p.y) return Status::Error(null_error(stage, "y (last step)"));
  if (!first && !(p.maxInvTemp > 0.f))
    return Status::Error("r_step: maxInvTemp must be positive, got " + std::to_string(p.maxInvTemp) + ".");

  const int D = p.D, b1 = p.b1, b2 = p.b2;
  const int nJB = (b2 + kTile - 1) / kTile;               // blocks of R rows j
  const int64_t nTok = int64_t(p.Fk) * b1 * b2;           // key tokens per batch row
  const int64_t items = int64_t(p.B) * p.H * p.Aq * p.Fk * b1 * nJB;
  const float s = p.scale;

  return parallel_for(stage, items, [&](int64_t begin, int64_t end) {
    // Per-thread scratch (fp32). Logical shapes in brackets.
    std::vector<float> Q(size_t(kTile) * D);     // [jb rows][D]   R-row queries aR (or q)
    std::vector<float> Kt(size_t(kTile) * D);    // [valid keys][D] key tile (compacted)
    std::vector<float> Vt(size_t(kTile) * D);    // [valid keys][D] value tile (last step)
    std::vector<float> accK(size_t(kTile) * D);  // [jb rows][D]   Σ e^{x−m} k
    std::vector<float> accV(size_t(kTile) * D);  // [jb rows][D]   Σ e^{x−m} v
    std::vector<float> invT(kTile), m(kTile), l(kTile), u(kTile), x(kTile);
    std::vector<int> key(kTile);                 // token columns l of the valid keys in the tile
    std::vector<char> bad(kTile);                // the R row met a non-finite logit → NaN outputs

    for (int64_t it = begin; it < end; ++it) {
      int64_t r = it;
      const int jb = int(r % nJB); r /= nJB;
      const int k = int(r % b1); r /= b1;
      const int f = int(r % p.Fk); r /= p.Fk;
      const int a = int(r % p.Aq); r /= p.Aq;
      const int h = int(r % p.H);
      const int b = int(r / p.H);
      if (!pair_allowed(p, a, f)) continue;

      const int j0 = jb * kTile, nj = std::min(kTile, b2 - j0);
      const int64_t pr = pair_index(p, b, h, a, f);
      // aR/cR rows (k, j): [pr][b1][b2]; aL/cL/y rows (j, k): [pr][b2][b1].
      for (int jj = 0; jj < nj; ++jj) {
        const int j = j0 + jj;
        if (first) {  // L = I: the query at row k, column j of query tile a (§A.3, §B.3)
          const int64_t tok = (int64_t(a) * b1 + k) * b2 + j;
          load_row(p.dtype, p.q.data, act_off(p.q, b, tok, h), D, &Q[size_t(jj) * D]);
          invT[jj] = 1.f;
        } else {
          const int64_t row = (pr * b1 + k) * b2 + j;
          load_row(p.dtype, p.aR, row * D, D, &Q[size_t(jj) * D]);
          const float c = p.cR[row];
          invT[jj] = std::isnan(c) ? c : c > 0.f ? std::min(1.f / c, p.maxInvTemp) : p.maxInvTemp;
        }
        m[jj] = -kInf; l[jj] = 0.f; u[jj] = 0.f; bad[jj] = 0;
      }
      std::fill(accK.begin(), accK.begin() + size_t(nj) * D, 0.f);
      if (last) std::fill(accV.begin(), accV.begin() + size_t(nj) * D, 0.f);

      const int64_t keyRow0 = (int64_t(f) * b1 + k) * b2;  // token of key (f, k, 0)
      for (int l0 = 0; l0 < b2; l0 += kTile) {
        const int nl = std::min(kTile, b2 - l0);
        int nv = 0;  // compact the valid keys of this tile; invalid keys have logit −∞
        for (int ll = 0; ll < nl; ++ll) {
          const int64_t tok = keyRow0 + l0 + ll;
          if (p.keyValid && !p.keyValid[int64_t(b) * nTok + tok]) continue;
          load_row(p.dtype, p.k.data, act_off(p.k, b, tok, h), D, &Kt[size_t(nv) * D]);
          if (last) load_row(p.dtype, p.v.data, act_off(p.v, b, tok, h), D, &Vt[size_t(nv) * D]);
          key[nv++] = l0 + ll;
        }
        if (nv == 0) continue;

        for (int jj = 0; jj < nj; ++jj) {
          if (bad[jj]) continue;
          const float* qj = &Q[size_t(jj) * D];
          const float sx = s * invT[jj];
          float mx = -kInf;
          for (int c = 0; c < nv; ++c) {
            x[c] = sx * dot(qj, &Kt[size_t(c) * D], D);
            if (!std::isfinite(x[c])) bad[jj] = 1;
            mx = std::max(mx, x[c]);
          }
          if (bad[jj]) continue;
          float* aK = &accK[size_t(jj) * D];
          float* aV = &accV[size_t(jj) * D];
          const float mOld = m[jj], mNew = std::max(mOld, mx);
          if (mOld != -kInf && mNew != mOld) {
            // Rescale to the new max: ũ ← α(ũ + (m − m')ℓ), ℓ ← αℓ, acc ← α·acc (§C.3 shifted form).
            const float alpha = std::exp(mOld - mNew);
            u[jj] = alpha * (u[jj] + (mOld - mNew) * l[jj]);
            l[jj] *= alpha;
            scal(alpha, aK, D);
            if (last) scal(alpha, aV, D);
          }
          float lj = l[jj], uj = u[jj];
          for (int c = 0; c < nv; ++c) {
            const float xm = x[c] - mNew;
            const float pc = std::exp(xm);
            lj += pc;
            uj += pc * xm;
            axpy(pc, &Kt[size_t(c) * D], aK, D);
            if (last) axpy(pc, &Vt[size_t(c) * D], aV, D);
          }
          l[jj] = lj; u[jj] = uj; m[jj] = mNew;
        }
      }

      // Finalise: aL = accK/ℓ, y = accV/ℓ, cL = ũ/ℓ − log ℓ (= Σ R log R); no valid key → 0, 0, +INF;
      // a non-finite logit → NaN, NaN, NaN (the L-step then poisons every query that sees this row).
      for (int jj = 0; jj < nj; ++jj) {
        const int64_t row = (pr * b2 + j0 + jj) * b1 + k;
        float* aK = &accK[size_t(jj) * D];
        float* aV = &accV[size_t(jj) * D];
        if (bad[jj]) {
          std::fill(aK, aK + D, kNaN);
          store_row(p.dtype, p.aL, row * D, D, aK);
          if (last) store_row(p.dtype, p.y, row * D, D, aK);
          p.cL[row] = kNaN;
          continue;
        }
        if (m[jj] == -kInf || !(l[jj] > 0.f)) {
          zero_row(p.dtype, p.aL, row * D, D);
          if (last) zero_row(p.dtype, p.y, row * D, D);
          p.cL[row] = kInf;
          continue;
        }
        const float inv = 1.f / l[jj];
        scal(inv, aK, D);
        store_row(p.dtype, p.aL, row * D, D, aK);
        if (last) {
          scal(inv, aV, D);
          store_row(p.dtype, p.y, row * D, D, aV);
        }
        p.cL[row] = u[jj] * inv - std::log(l[jj]);
      }
    }
  });
}

}  // namespace cpu
}  // namespace monarch
