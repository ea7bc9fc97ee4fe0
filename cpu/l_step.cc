// cpu_l_step.cc — monarch::cpu::l_step: the tiled-Monarch L-step (§A.2 L-step, §B.3).
// One work item per (b, h, query tile a, column j): the b1 queries q[a,:,j] against the candidates
// (f, k) of every allowed key tile f, logits u = s·⟨q, aL[a,f,j,k]⟩ − cL[a,f,j,k] (cL = +INF ⇒ −∞).
//   final    : online softmax over candidate tiles (§C.3 without entropy), o = Σ L·y[a,f,j,k].
//   non-final: pass 1 gives each query's LSE over all candidates; pass 2 recomputes the logits per
//              candidate tile and reduces the normalised L over the valid queries (like a
//              FlashAttention dK/dV pass): aR[a,f,k,j] = Σ_i L·q[a,i,j], cR[a,f,k,j] = Σ_i L.
// A query whose candidates are all −∞ outputs 0 and contributes nothing (never NaN).
#include <algorithm>
#include <cmath>
#include <vector>

#include "common.h"
#include "threads.h"

namespace monarch {
namespace cpu {

using namespace detail;

namespace {

// Logits of the queries Q [nq][D] against one candidate tile (aL rows A [nc][D], bias cLt [nc]):
// X [nq][nc].
void candidate_logits(const float* Q, int nq, const float* A, const float* cLt, int nc, int D,
                      float s, float* X) {
  for (int i = 0; i < nq; ++i) {
    const float* qi = Q + size_t(i) * D;
    for (int c = 0; c < nc; ++c)
      X[size_t(i) * nc + c] = cLt[c] == kInf ? -kInf : s * dot(qi, A + size_t(c) * D, D) - cLt[c];
  }
}

}  // namespace

Status l_step(const MonarchParams& p, bool final) {
  const char* stage = final ? "l_step (final)" : "l_step";
  std::string e = monarch_geometry_error(p, stage);
  if (!e.empty()) return Status::Error(e);
  if (!p.q.data) return Status::Error(null_error(stage, "q.data"));
  if (!p.aL) return Status::Error(null_error(stage, "aL"));
  if (!p.cL) return Status::Error(null_error(stage, "cL"));
  if (final && !p.y) return Status::Error(null_error(stage, "y"));
  if (final && !p.o.data) return Status::Error(null_error(stage, "o.data"));
  if (!final && !p.aR) return Status::Error(null_error(stage, "aR"));
  if (!final && !p.cR) return Status::Error(null_error(stage, "cR"));

  const int D = p.D, b1 = p.b1, b2 = p.b2;
  const int64_t nTokQ = int64_t(p.Aq) * b1 * b2;
  const int64_t items = int64_t(p.B) * p.H * p.Aq * b2;
  const float s = p.scale;
  const int ct = std::min(kTile, b1);  // candidate tile: up to kTile rows k of one key tile f

  return parallel_for(stage, items, [&](int64_t begin, int64_t end) {
    std::vector<float> Q(size_t(b1) * D);    // [b1 (i)][D]  queries of column j
    std::vector<float> A(size_t(ct) * D);    // [ct (k)][D]  aL candidate tile
    std::vector<float> Y(size_t(ct) * D);    // [ct (k)][D]  y candidate tile (final)
    std::vector<float> cLt(ct);              // [ct (k)]     cL candidate tile
    std::vector<float> X(size_t(b1) * ct);   // [b1 (i)][ct] logits
    std::vector<float> m(b1), l(b1);         // running max / ℓ, then LSE (non-final)
    std::vector<float> acc(final ? size_t(b1) * D : size_t(ct) * D);  // o rows, or aR rows
    std::vector<float> cRt(ct);
    std::vector<char> qok(b1);
    std::vector<char> bad(b1);  // the query met a non-finite logit (not an empty R row's −∞) → NaN

    for (int64_t it = begin; it < end; ++it) {
      int64_t r = it;
      const int j = int(r % b2); r /= b2;
      const int a = int(r % p.Aq); r /= p.Aq;
      const int h = int(r % p.H);
      const int b = int(r / p.H);

      for (int i = 0; i < b1; ++i) {
        const int64_t tok = (int64_t(a) * b1 + i) * b2 + j;
        load_row(p.dtype, p.q.data, act_off(p.q, b, tok, h), D, &Q[size_t(i) * D]);
        qok[i] = !p.queryValid || p.queryValid[int64_t(b) * nTokQ + tok];
        m[i] = -kInf; l[i] = 0.f; bad[i] = 0;
      }
      if (final) std::fill(acc.begin(), acc.end(), 0.f);

      // Pass over candidates (f, k0..k0+nc): online softmax; with acc += p·y on the final step.
      for (int f = 0; f < p.Fk; ++f) {
        if (!pair_allowed(p, a, f)) continue;
        const int64_t rowBase = pair_index(p, b, h, a, f) * b2 * b1 + int64_t(j) * b1;  // (j, k=0)
        for (int k0 = 0; k0 < b1; k0 += ct) {
          const int nc = std::min(ct, b1 - k0);
          load_row(p.dtype, p.aL, (rowBase + k0) * D, int64_t(nc) * D, A.data());
          if (final) load_row(p.dtype, p.y, (rowBase + k0) * D, int64_t(nc) * D, Y.data());
          std::copy(p.cL + rowBase + k0, p.cL + rowBase + k0 + nc, cLt.begin());
          candidate_logits(Q.data(), b1, A.data(), cLt.data(), nc, D, s, X.data());
          for (int i = 0; i < b1; ++i) {
            if (bad[i]) continue;
            const float* xi = &X[size_t(i) * nc];
            float mx = -kInf;
            for (int c = 0; c < nc; ++c) {
              // −∞ is legitimate only for an R row with no valid key (cL = +INF, §A.4 fix).
              const float xc = xi[c];
              if (std::isnan(xc) || xc == kInf || (xc == -kInf && cLt[c] != kInf)) bad[i] = 1;
              mx = std::max(mx, xc);
            }
            if (bad[i] || mx == -kInf) continue;
            const float mNew = std::max(m[i], mx);
            if (m[i] != -kInf && mNew != m[i]) {
              const float alpha = std::exp(m[i] - mNew);
              l[i] *= alpha;
              if (final) scal(alpha, &acc[size_t(i) * D], D);
            }
            float li = l[i];
            for (int c = 0; c < nc; ++c) {
              if (xi[c] == -kInf) continue;
              const float pc = std::exp(xi[c] - mNew);
              li += pc;
              if (final) axpy(pc, &Y[size_t(c) * D], &acc[size_t(i) * D], D);
            }
            l[i] = li; m[i] = mNew;
          }
        }
      }

      if (final) {
        for (int i = 0; i < b1; ++i) {
          float* oi = &acc[size_t(i) * D];
          if (bad[i]) std::fill(oi, oi + D, kNaN);
          else if (m[i] == -kInf || !(l[i] > 0.f)) std::fill(oi, oi + D, 0.f);
          else scal(1.f / l[i], oi, D);
          const int64_t tok = (int64_t(a) * b1 + i) * b2 + j;
          store_row(p.dtype, p.o.data, act_off(p.o, b, tok, h), D, oi);
        }
        continue;
      }

      // Non-final: m[i] ← LSE_i; queries with no finite candidate or masked out take no part.
      for (int i = 0; i < b1; ++i) {
        if (bad[i]) m[i] = kNaN;  // L = NaN for every candidate: NaN spreads to the aR/cR it feeds
        else if (m[i] == -kInf || !(l[i] > 0.f)) qok[i] = 0;
        else m[i] += std::log(l[i]);
      }
      for (int f = 0; f < p.Fk; ++f) {
        if (!pair_allowed(p, a, f)) continue;
        const int64_t pr = pair_index(p, b, h, a, f);
        const int64_t rowBase = pr * b2 * b1 + int64_t(j) * b1;
        for (int k0 = 0; k0 < b1; k0 += ct) {
          const int nc = std::min(ct, b1 - k0);
          load_row(p.dtype, p.aL, (rowBase + k0) * D, int64_t(nc) * D, A.data());
          std::copy(p.cL + rowBase + k0, p.cL + rowBase + k0 + nc, cLt.begin());
          candidate_logits(Q.data(), b1, A.data(), cLt.data(), nc, D, s, X.data());
          std::fill(acc.begin(), acc.begin() + size_t(nc) * D, 0.f);
          std::fill(cRt.begin(), cRt.begin() + nc, 0.f);
          for (int i = 0; i < b1; ++i) {
            if (!qok[i]) continue;
            const float* qi = &Q[size_t(i) * D];
            for (int c = 0; c < nc; ++c) {
              const float x = X[size_t(i) * nc + c];
              if (x == -kInf) continue;
              const float L = std::exp(x - m[i]);  // normalised L[a,f,j,k,i]
              cRt[c] += L;
              axpy(L, qi, &acc[size_t(c) * D], D);
            }
          }
          for (int c = 0; c < nc; ++c) {  // aR/cR rows (k, j): [pr][b1][b2]
            const int64_t row = (pr * b1 + k0 + c) * b2 + j;
            store_row(p.dtype, p.aR, row * D, D, &acc[size_t(c) * D]);
            p.cR[row] = cRt[c];
          }
        }
      }
    }
  });
}

}  // namespace cpu
}  // namespace monarch
