// cpu_selfcheck.cc — standalone checker of the CPU backend (cpu/*.cc) against an independent
// float64 tiled Monarch that materialises L, R and M (§A.2, §B.3), and a two-pass float64 dense
// attention. Build (no Node, no CMake):
//   g++ -O2 -std=c++17 -I. -Iinclude test/native/cpu_selfcheck.cc cpu/*.cc
//   (continued) -lpthread -o /tmp/cpu_selfcheck && /tmp/cpu_selfcheck
// Prints the max abs error of every case; exits 1 if any case exceeds its tolerance. argv[1]: seed.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cpu/common.h"

using namespace monarch;
using std::vector;
static const double kInfD = std::numeric_limits<double>::infinity();
static int g_fail = 0;

static void report(const char* name, double err, double tol) {
  const bool ok = err <= tol;  // NaN fails
  if (!ok) ++g_fail;
  std::printf("%-58s max err %.3e  (tol %.0e)  %s\n", name, err, tol, ok ? "ok" : "FAIL");
}

// ---- problem, storage conversion -------------------------------------------------------------

struct Prob {
  int B = 1, H = 1, D = 8, b1 = 2, b2 = 3, Aq = 1, Fk = 1, qTile0 = 0, C = 0, T = 1;
  float scale = 0.f, maxInvTemp = 1e4f;
  vector<float> q, k, v;       // BSHD contiguous: q [B][Nq][H][D], k/v [B][Nk][H][D]
  vector<uint8_t> kv, qv;      // [B][Nk], [B][Nq]; empty = all valid
  int Nq() const { return Aq * b1 * b2; }
  int Nk() const { return Fk * b1 * b2; }
};

static Prob make_prob(std::mt19937& g, int B, int H, int D, int b1, int b2, int Aq, int Fk,
                      float amp = 1.5f) {
  Prob P;
  P.B = B; P.H = H; P.D = D; P.b1 = b1; P.b2 = b2; P.Aq = Aq; P.Fk = Fk;
  P.scale = 1.f / std::sqrt(float(D));
  std::normal_distribution<float> n(0.f, amp);
  P.q.resize(size_t(B) * P.Nq() * H * D); P.k.resize(size_t(B) * P.Nk() * H * D); P.v.resize(P.k.size());
  for (auto& x : P.q) x = n(g);
  for (auto& x : P.k) x = n(g);
  for (auto& x : P.v) x = n(g) / amp;
  return P;
}

// Rounds x to dtype t (what the backend sees after storage).
static float round_to(DType t, float x) {
  if (t == kF16) return f16_to_f32(f32_to_f16(x));
  if (t == kBF16) return bf16_to_f32(f32_to_bf16(x));
  return x;
}

// A [B][S][H][D] tensor in dtype t, laid out BSHD or BHSD, with its Act view.
struct Stored {
  vector<uint8_t> bytes; Act act; DType t; int B, S, H, D;
  Stored(const vector<float>& x, DType t_, int B_, int S_, int H_, int D_, bool bhsd)
      : t(t_), B(B_), S(S_), H(H_), D(D_) {
    bytes.assign(size_t(B) * S * H * D * dtype_size(t) + 16, 0);
    act.data = bytes.data();
    if (bhsd) { act.sB = int64_t(H) * S * D; act.sH = int64_t(S) * D; act.sS = D; }
    else      { act.sB = int64_t(S) * H * D; act.sS = int64_t(H) * D; act.sH = D; }
    if (!x.empty())
      for (int b = 0; b < B; ++b) for (int s = 0; s < S; ++s) for (int h = 0; h < H; ++h)
        cpu::detail::store_row(t, act.data, cpu::detail::act_off(act, b, s, h), D,
                               &x[((size_t(b) * S + s) * H + h) * D]);
  }
  vector<float> to_bshd() const {
    vector<float> x(size_t(B) * S * H * D);
    for (int b = 0; b < B; ++b) for (int s = 0; s < S; ++s) for (int h = 0; h < H; ++h)
      cpu::detail::load_row(t, act.data, cpu::detail::act_off(act, b, s, h), D,
                            &x[((size_t(b) * S + s) * H + h) * D]);
    return x;
  }
};

// ---- the backend's full T loop ---------------------------------------------------------------

static vector<float> run_monarch(const Prob& P, DType t, bool bhsd) {
  Stored q(P.q, t, P.B, P.Nq(), P.H, P.D, bhsd), k(P.k, t, P.B, P.Nk(), P.H, P.D, bhsd),
      v(P.v, t, P.B, P.Nk(), P.H, P.D, bhsd), o({}, t, P.B, P.Nq(), P.H, P.D, bhsd);
  MonarchParams p;
  p.dtype = t; p.B = P.B; p.H = P.H; p.D = P.D; p.b1 = P.b1; p.b2 = P.b2; p.Aq = P.Aq; p.Fk = P.Fk;
  p.qTile0 = P.qTile0; p.causalTiles = P.C; p.scale = P.scale; p.maxInvTemp = P.maxInvTemp;
  p.q = q.act; p.k = k.act; p.v = v.act; p.o = o.act;
  p.keyValid = P.kv.empty() ? nullptr : P.kv.data();
  p.queryValid = P.qv.empty() ? nullptr : P.qv.data();
  const size_t nD = size_t(ws_aR_elems(p)) * dtype_size(t), nC = size_t(ws_c_elems(p));
  vector<uint8_t> aR(nD), aL(nD), y(nD);
  vector<float> cR(nC), cL(nC);
  p.aR = aR.data(); p.aL = aL.data(); p.y = y.data(); p.cR = cR.data(); p.cL = cL.data();
  Status st = cpu::r_step(p, true, P.T == 1);
  for (int it = 1; it < P.T && st.ok; ++it) {
    st = cpu::l_step(p, false);
    if (st.ok) st = cpu::r_step(p, false, it == P.T - 1);
  }
  if (st.ok) st = cpu::l_step(p, true);
  if (!st.ok) { std::printf("backend error: %s\n", st.message.c_str()); ++g_fail; }
  return o.to_bshd();
}

// ---- float64 references ----------------------------------------------------------------------

// Tiled Monarch (§B.3) with materialised R [f][k][j][l], L [f][j][k][i] and M; returns Z (BSHD).
static vector<double> ref_monarch(const Prob& P, DType t) {
  const int B = P.B, H = P.H, D = P.D, b1 = P.b1, b2 = P.b2, Fk = P.Fk, Nq = P.Nq(), Nk = P.Nk();
  const double s = P.scale;
  auto Q = [&](int b, int tok, int h) { return &P.q[((size_t(b) * Nq + tok) * H + h) * D]; };
  auto K = [&](int b, int tok, int h) { return &P.k[((size_t(b) * Nk + tok) * H + h) * D]; };
  auto V = [&](int b, int tok, int h) { return &P.v[((size_t(b) * Nk + tok) * H + h) * D]; };
  auto rd = [&](const float* x, int d) { return double(round_to(t, x[d])); };
  vector<double> Z(size_t(B) * Nq * H * D, 0.0);
  for (int b = 0; b < B; ++b) for (int h = 0; h < H; ++h) for (int a = 0; a < P.Aq; ++a) {
    auto ok = [&](int f) { return P.C <= 0 || f / P.C <= (P.qTile0 + a) / P.C; };
    auto qtok = [&](int i, int j) { return (a * b1 + i) * b2 + j; };
    auto ktok = [&](int f, int k, int l) { return (f * b1 + k) * b2 + l; };
    vector<double> aR(size_t(Fk) * b1 * b2 * D), cR(size_t(Fk) * b1 * b2, 1.0);
    vector<double> R(size_t(Fk) * b1 * b2 * b2), aL(size_t(Fk) * b2 * b1 * D), cL(size_t(Fk) * b2 * b1);
    vector<double> L(size_t(Fk) * b2 * b1 * b1);
    vector<char> empty(size_t(Fk) * b1 * b2);
    for (int f = 0; f < Fk; ++f) for (int k = 0; k < b1; ++k) for (int j = 0; j < b2; ++j)
      for (int d = 0; d < D; ++d) aR[((size_t(f) * b1 + k) * b2 + j) * D + d] = rd(Q(b, qtok(k, j), h), d);
    for (int it = 0; it < P.T; ++it) {
      for (int f = 0; f < Fk; ++f) if (ok(f)) for (int k = 0; k < b1; ++k) for (int j = 0; j < b2; ++j) {
        const size_t rr = (size_t(f) * b1 + k) * b2 + j;
        const double c = cR[rr], mit = P.maxInvTemp;
        const double invT = it == 0 ? 1.0 : (c > 0 ? std::min(1.0 / c, mit) : mit);
        vector<double> x(b2, -kInfD);
        double mx = -kInfD;
        for (int l = 0; l < b2; ++l) {
          if (!P.kv.empty() && !P.kv[size_t(b) * Nk + ktok(f, k, l)]) continue;
          double dd = 0;
          for (int d = 0; d < D; ++d) dd += aR[rr * D + d] * rd(K(b, ktok(f, k, l), h), d);
          x[l] = s * dd * invT; mx = std::max(mx, x[l]);
        }
        empty[rr] = mx == -kInfD;
        double z = 0;
        for (int l = 0; l < b2; ++l) z += empty[rr] ? 0 : std::exp(x[l] - mx);
        const size_t lr = (size_t(f) * b2 + j) * b1 + k;
        double cl = 0;
        for (int d = 0; d < D; ++d) aL[lr * D + d] = 0;
        for (int l = 0; l < b2; ++l) {
          const double r = empty[rr] ? 0 : std::exp(x[l] - mx) / z;
          R[rr * b2 + l] = r;
          if (r > 0) cl += r * std::log(r);
          for (int d = 0; d < D; ++d) aL[lr * D + d] += r * rd(K(b, ktok(f, k, l), h), d);
        }
        cL[lr] = cl;
      }
      for (int j = 0; j < b2; ++j) for (int i = 0; i < b1; ++i) {  // L over (f, k) per query
        vector<double> u(size_t(Fk) * b1, -kInfD);
        double mx = -kInfD;
        for (int f = 0; f < Fk; ++f) if (ok(f)) for (int k = 0; k < b1; ++k) {
          if (empty[(size_t(f) * b1 + k) * b2 + j]) continue;
          const size_t lr = (size_t(f) * b2 + j) * b1 + k;
          double dd = 0;
          for (int d = 0; d < D; ++d) dd += rd(Q(b, qtok(i, j), h), d) * aL[lr * D + d];
          u[f * b1 + k] = s * dd - cL[lr]; mx = std::max(mx, u[f * b1 + k]);
        }
        double z = 0;
        for (double w : u) z += mx == -kInfD ? 0 : std::exp(w - mx);
        for (int f = 0; f < Fk; ++f) for (int k = 0; k < b1; ++k)
          L[((size_t(f) * b2 + j) * b1 + k) * b1 + i] = mx == -kInfD ? 0 : std::exp(u[f * b1 + k] - mx) / z;
      }
      if (it == P.T - 1) break;
      for (int f = 0; f < Fk; ++f) for (int k = 0; k < b1; ++k) for (int j = 0; j < b2; ++j) {
        const size_t rr = (size_t(f) * b1 + k) * b2 + j;
        cR[rr] = 0;
        for (int d = 0; d < D; ++d) aR[rr * D + d] = 0;
        for (int i = 0; i < b1; ++i) {
          if (!P.qv.empty() && !P.qv[size_t(b) * Nq + qtok(i, j)]) continue;
          const double w = L[((size_t(f) * b2 + j) * b1 + k) * b1 + i];
          cR[rr] += w;
          for (int d = 0; d < D; ++d) aR[rr * D + d] += w * rd(Q(b, qtok(i, j), h), d);
        }
      }
    }
    for (int i = 0; i < b1; ++i) for (int j = 0; j < b2; ++j) {  // Z = M·V, M = L ⊗ R entrywise
      double* z = &Z[((size_t(b) * Nq + qtok(i, j)) * H + h) * D];
      for (int f = 0; f < Fk; ++f) if (ok(f)) for (int k = 0; k < b1; ++k) for (int l = 0; l < b2; ++l) {
        const double M = L[((size_t(f) * b2 + j) * b1 + k) * b1 + i] * R[((size_t(f) * b1 + k) * b2 + j) * b2 + l];
        for (int d = 0; d < D; ++d) z[d] += M * rd(V(b, ktok(f, k, l), h), d);
      }
    }
  }
  return Z;
}

// Two-pass dense softmax attention with causal chunk / q0 and key mask: o (BSHD), lse, entropy.
static void ref_dense(int B, int H, int D, int Nq, int Nk, int q0, int C, double s,
                      const vector<float>& q, const vector<float>& k, const vector<float>& v,
                      const vector<uint8_t>& kv, vector<double>& o, vector<double>& lse,
                      vector<double>& ent) {
  o.assign(size_t(B) * Nq * H * D, 0); lse.assign(size_t(B) * H * Nq, -kInfD); ent.assign(lse.size(), 0);
  for (int b = 0; b < B; ++b) for (int h = 0; h < H; ++h) for (int n = 0; n < Nq; ++n) {
    const int lim = C > 0 ? std::min(Nk, ((q0 + n) / C + 1) * C) : Nk;
    vector<double> x(Nk, -kInfD);
    double mx = -kInfD;
    for (int t = 0; t < lim; ++t) {
      if (!kv.empty() && !kv[size_t(b) * Nk + t]) continue;
      double dd = 0;
      for (int d = 0; d < D; ++d) dd += double(q[((size_t(b) * Nq + n) * H + h) * D + d]) * k[((size_t(b) * Nk + t) * H + h) * D + d];
      x[t] = s * dd; mx = std::max(mx, x[t]);
    }
    if (mx == -kInfD) continue;
    double z = 0;
    for (int t = 0; t < Nk; ++t) z += std::exp(x[t] - mx);
    const size_t row = (size_t(b) * H + h) * Nq + n;
    lse[row] = mx + std::log(z);
    for (int t = 0; t < Nk; ++t) {
      const double p = std::exp(x[t] - mx) / z;
      if (p > 0) ent[row] -= p * std::log(p);
      for (int d = 0; d < D; ++d) o[((size_t(b) * Nq + n) * H + h) * D + d] += p * v[((size_t(b) * Nk + t) * H + h) * D + d];
    }
  }
}

template <class A, class Bv>
static double max_err(const A& x, const Bv& y) {
  double e = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = std::fabs(double(x[i]) - double(y[i]));
    if (std::isinf(double(x[i])) && x[i] == y[i]) continue;
    e = std::isnan(d) ? NAN : std::max(e, d);
    if (std::isnan(e)) return e;
  }
  return e;
}

// Random key mask (~20 % invalid) plus, when asked, one key row (f=0, k=b1-1) fully masked.
static void add_key_mask(std::mt19937& g, Prob& P, bool fullRow) {
  P.kv.assign(size_t(P.B) * P.Nk(), 1);
  std::uniform_int_distribution<int> u(0, 4);
  for (auto& x : P.kv) x = u(g) != 0;
  if (fullRow) for (int l = 0; l < P.b2; ++l) P.kv[size_t(0) * P.Nk() + (P.b1 - 1) * P.b2 + l] = 0;
}

int main(int argc, char** argv) {
  std::mt19937 g(argc > 1 ? unsigned(std::strtoul(argv[1], nullptr, 10)) : 1234u);  // optional seed
  cpu::set_num_threads(2);
  char name[160];

  // (0) dtype conversions: fp16 against the compiler's _Float16, bf16 against a float64 nearest.
  {
    double bad = 0;
    std::uniform_int_distribution<uint32_t> bits;
    for (int n = 0; n < 2000000; ++n) {
      uint32_t u = bits(g);
      if (n < 65536) u = (uint32_t(n) << 13) ^ (n & 1 ? 0x1000u : 0u);  // dense sweep incl. ties
      float x; std::memcpy(&x, &u, 4);
      const uint16_t h = f32_to_f16(x);
      const _Float16 r = (_Float16)x;
      uint16_t rh; std::memcpy(&rh, &r, 2);
      if (std::isnan(x) ? !std::isnan(f16_to_f32(h)) : h != rh) ++bad;
      if (!std::isnan(x) && f16_to_f32(h) != float(r)) ++bad;
      const uint16_t bb = f32_to_bf16(x);
      if (std::isnan(x)) { bad += !std::isnan(bf16_to_f32(bb)); continue; }
      const uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;  // truncation and next (same sign)
      float flo, fhi; std::memcpy(&flo, &lo, 4); std::memcpy(&fhi, &hi, 4);
      // IEEE overflow: past the largest finite bf16 the next value counts as ±2^128 (rounds to Inf).
      const double dhi = std::isinf(fhi) ? std::copysign(std::ldexp(1.0, 128), fhi) : double(fhi);
      const double dl = std::fabs(double(x) - flo), dh = std::fabs(dhi - x);
      const uint16_t want = uint16_t((dl < dh || (dl == dh && !((lo >> 16) & 1))) ? lo >> 16 : hi >> 16);
      if (bb != want && !std::isinf(x)) ++bad;
    }
    for (uint32_t h = 0; h < 65536; ++h) {  // fp16 → fp32 → fp16 round trip, every pattern
      const float f = f16_to_f32(uint16_t(h));
      if (std::isnan(f) ? (h & 0x7c00u) != 0x7c00u : f32_to_f16(f) != h) ++bad;
    }
    report("dtype conversions (mismatches)", bad, 0);
  }

  // (1) full T loop vs float64 tiled Monarch.
  struct Case { int B, H, D, b1, b2, Aq, Fk, C, qTile0; bool mask, qmask, killLastBatch = false; };
  const Case cases[] = {
      {2, 2, 16, 4, 5, 1, 1, 0, 0, false, false}, {1, 2, 8, 1, 7, 2, 3, 0, 0, false, false},
      {1, 1, 12, 6, 1, 2, 2, 0, 0, true, false},  {2, 1, 9, 3, 4, 3, 4, 2, 1, true, true},
      {1, 2, 16, 5, 3, 2, 6, 3, 2, true, true},   {1, 1, 33, 7, 70, 1, 2, 0, 0, true, false},
      {1, 1, 8, 70, 3, 2, 1, 0, 0, false, true},  {2, 1, 5, 3, 3, 3, 3, 1, 0, true, true},
      {2, 1, 6, 3, 4, 2, 3, 0, 0, true, true, true},
  };
  for (int T = 1; T <= 3; ++T) for (const Case& c : cases) {
    Prob P = make_prob(g, c.B, c.H, c.D, c.b1, c.b2, c.Aq, c.Fk);
    P.T = T; P.C = c.C; P.qTile0 = c.qTile0; P.maxInvTemp = 1e4f;
    if (c.mask) add_key_mask(g, P, true);
    if (c.killLastBatch)  // every candidate −∞ for batch B−1: outputs 0, never NaN
      std::fill(P.kv.end() - P.Nk(), P.kv.end(), 0);
    if (c.qmask) { P.qv.assign(size_t(P.B) * P.Nq(), 1); for (size_t i = 0; i < P.qv.size(); i += 3) P.qv[i] = 0; }
    const double e = max_err(run_monarch(P, kF32, false), ref_monarch(P, kF32));
    std::snprintf(name, sizeof name, "T=%d B%d H%d D%d b1=%d b2=%d Aq%d Fk%d C%d q0=%d%s%s%s", T, c.B, c.H, c.D,
                  c.b1, c.b2, c.Aq, c.Fk, c.C, c.qTile0, c.mask ? " kmask" : "", c.qmask ? " qmask" : "",
                  c.killLastBatch ? " nokeys" : "");
    report(name, e, T == 1 ? 2e-5 : 2e-4);
  }

  // (2) exactness oracles vs float64 dense: b2 = 1, b1 = 1, identical queries (with a masked key row).
  for (int T = 1; T <= 3; ++T) for (int kind = 0; kind < 3; ++kind) {
    const int b1 = kind == 1 ? 1 : 4, b2 = kind == 0 ? 1 : 5, Aq = 3, Fk = 4, C = kind == 2 ? 0 : 2, qt0 = 1;
    Prob P = make_prob(g, 2, 2, 16, b1, b2, Aq, Fk);
    P.T = T; P.C = C; P.qTile0 = qt0;
    // Exact only without the temperature clamp: a key tile with L mass < 1/maxInvTemp is clamped.
    P.maxInvTemp = 1e30f;
    add_key_mask(g, P, kind == 2);
    if (kind == 2)
      for (int b = 0; b < P.B; ++b) for (int n = 1; n < P.Nq(); ++n) for (int h = 0; h < P.H; ++h)
        std::memcpy(&P.q[((size_t(b) * P.Nq() + n) * P.H + h) * P.D], &P.q[(size_t(b) * P.Nq() * P.H + h) * P.D], P.D * 4);
    vector<double> o, lse, ent;
    const int tile = b1 * b2;
    ref_dense(P.B, P.H, P.D, P.Nq(), P.Nk(), qt0 * tile, C * tile, P.scale, P.q, P.k, P.v, P.kv, o, lse, ent);
    const double e = max_err(run_monarch(P, kF32, false), o);
    std::snprintf(name, sizeof name, "oracle T=%d %s == dense", T,
                  kind == 0 ? "b2=1 (causal, kmask)" : kind == 1 ? "b1=1 (causal, kmask)" : "identical queries (masked row)");
    report(name, e, 2e-5);
  }

  // (3) dense: output, lse, entropy vs two-pass float64 (causal chunk + q0, key mask, empty rows).
  for (int cs = 0; cs < 4; ++cs) {
    const int B = 2, H = 2, D = cs == 3 ? 7 : 32, Nq = cs == 0 ? 1 : 150, Nk = cs == 0 ? 5 : 300;
    const int C = cs >= 2 ? 40 : 0, q0 = cs >= 2 ? 100 : 0;
    std::normal_distribution<float> n(0.f, 1.5f);
    vector<float> q(size_t(B) * Nq * H * D), k(size_t(B) * Nk * H * D), v(k.size());
    for (auto& x : q) x = n(g);
    for (auto& x : k) x = n(g);
    for (auto& x : v) x = n(g);
    vector<uint8_t> kv(size_t(B) * Nk, 1);
    if (cs >= 1) { for (size_t i = 0; i < kv.size(); i += 4) kv[i] = 0; }
    if (cs == 3) std::fill(kv.begin(), kv.begin() + Nk, 0);  // batch 0: no valid key at all
    vector<double> ro, rl, re;
    ref_dense(B, H, D, Nq, Nk, q0, C, 1.0 / std::sqrt(D), q, k, v, kv, ro, rl, re);
    for (int lay = 0; lay < 2; ++lay) {
      Stored sq(q, kF32, B, Nq, H, D, lay), sk(k, kF32, B, Nk, H, D, lay), sv(v, kF32, B, Nk, H, D, lay),
          so({}, kF32, B, Nq, H, D, lay);
      DenseParams p;
      p.B = B; p.H = H; p.D = D; p.Nq = Nq; p.Nk = Nk; p.q0 = q0; p.causalChunk = C;
      p.scale = 1.f / std::sqrt(float(D));
      p.q = sq.act; p.k = sk.act; p.v = sv.act; p.o = so.act; p.keyValid = kv.data();
      vector<float> lse(size_t(B) * H * Nq), ent(lse.size());
      p.lse = lse.data(); p.entropy = ent.data();
      Status st = cpu::dense(p);
      if (!st.ok) { std::printf("dense error: %s\n", st.message.c_str()); ++g_fail; }
      std::snprintf(name, sizeof name, "dense Nq%d Nk%d D%d C%d q0=%d %s: o / lse / entropy", Nq, Nk, D, C, q0,
                    lay ? "BHSD" : "BSHD");
      const double e = std::max({max_err(so.to_bshd(), ro), max_err(lse, rl), max_err(ent, re)});
      report(name, e, 2e-5);
    }
  }

  // (4) fp16 / bf16 storage vs float64 on the rounded inputs (MA tolerances §E: 1e-2 / 5e-2).
  for (int T = 1; T <= 2; ++T) for (DType t : {kF16, kBF16}) {
    Prob P = make_prob(g, 2, 2, 32, 6, 10, 2, 3);
    P.T = T; P.C = 2; P.qTile0 = 1; add_key_mask(g, P, true);
    const double e = max_err(run_monarch(P, t, false), ref_monarch(P, t));
    std::snprintf(name, sizeof name, "%s storage T=%d b1=6 b2=10 Aq2 Fk3 causal kmask", dtype_name(t), T);
    report(name, e, t == kF16 ? 1e-2 : 5e-2);
  }

  // (5) strided BHSD views == BSHD (bit-identical), and thread count does not change results.
  {
    Prob P = make_prob(g, 2, 3, 24, 5, 6, 2, 3);
    P.T = 2; add_key_mask(g, P, false);
    const vector<float> a = run_monarch(P, kBF16, false), b = run_monarch(P, kBF16, true);
    report("BHSD == BSHD (bf16, T=2, bitwise)", max_err(a, b), 0);
    cpu::set_num_threads(1);
    const vector<float> c = run_monarch(P, kBF16, false);
    cpu::set_num_threads(3);
    const vector<float> d = run_monarch(P, kBF16, true);
    cpu::set_num_threads(2);
    report("1 / 2 / 3 threads identical (bitwise)", std::max(max_err(a, c), max_err(a, d)), 0);
  }

  // (6) gather_tokens: permutation with zero rows, BSHD → BHSD, exact.
  {
    const int B = 2, H = 3, D = 5, nSrc = 7, nDst = 9;
    Prob P = make_prob(g, B, H, D, 1, nSrc, 1, 1);  // P.q: [B][7][H][D]
    vector<int32_t> map = {6, -1, 0, 3, 3, 5, -1, 1, 2};
    Stored src(P.q, kF16, B, nSrc, H, D, false), dst({}, kF16, B, nDst, H, D, true);
    GatherParams gp;
    gp.dtype = kF16; gp.B = B; gp.H = H; gp.D = D; gp.nDst = nDst; gp.map = map.data();
    gp.src = src.act; gp.dst = dst.act;
    Status st = cpu::gather_tokens(gp);
    const vector<float> out = dst.to_bshd();
    double e = st.ok ? 0 : 1;
    for (int b = 0; b < B; ++b) for (int t = 0; t < nDst; ++t) for (int h = 0; h < H; ++h) for (int d = 0; d < D; ++d) {
      const float want = map[t] < 0 ? 0.f : round_to(kF16, P.q[((size_t(b) * nSrc + map[t]) * H + h) * D + d]);
      e = std::max(e, double(std::fabs(out[((size_t(b) * nDst + t) * H + h) * D + d] - want)));
    }
    report("gather_tokens (fp16, BSHD -> BHSD, zero rows)", e, 0);
  }

  // (7) validation: user errors return Status::Error, never crash.
  {
    int caught = 0, total = 0;
    MonarchParams p;  // all pointers null
    auto expect_err = [&](const Status& s) { ++total; caught += !s.ok; };
    expect_err(cpu::r_step(p, true, true));
    p.D = 0; expect_err(cpu::l_step(p, true)); p.D = 8;
    float dummy[64] = {};
    p.q.data = p.k.data = p.v.data = p.o.data = dummy; p.aL = p.aR = p.y = dummy; p.cL = p.cR = dummy;
    p.b1 = 0; expect_err(cpu::r_step(p, true, true)); p.b1 = 1;
    p.Fk = -1; expect_err(cpu::l_step(p, false)); p.Fk = 1;
    p.Aq = 0; expect_err(cpu::l_step(p, true)); p.Aq = 1;
    p.dtype = DType(7); expect_err(cpu::r_step(p, true, false)); p.dtype = kF32;
    DenseParams dp; dp.D = -3; expect_err(cpu::dense(dp));
    dp.D = 8; expect_err(cpu::dense(dp));  // null q
    GatherParams gp; gp.nDst = 3; expect_err(cpu::gather_tokens(gp));
    report("validation errors returned (missed of 9)", total - caught, 0);
  }

  std::printf(g_fail ? "\n%d FAILED\n" : "\nall passed\n", g_fail);
  return g_fail ? 1 : 0;
}
