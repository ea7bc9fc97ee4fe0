// l_step_columns_cand_kernel.cuh — the non-final L-step for b1 <= 64 with the candidates on the mma rows in
// both passes: L = softmax_c(u) of every query of a column, then aR = Σ_i L·q and cR = Σ_i L.
#pragma once

#include "l_step_config.cuh"

namespace monarch {
namespace cuda {
namespace {  // this header is included by l_step.cu only

// One CTA of kCandWarps warps per (b, h, a, j) column. The column's b1 queries (padded to NQ = 16·NQ16,
// zero rows) stay in shared memory for the whole kernel; the candidates c = (f, k) stream through a
// double-buffered ring in tiles of 16 per warp, and both passes compute Sᵀ = aL·qᵀ (16 candidates × NQ
// queries per warp), so no warp idles when b1 < 64 (480p: b1 = 30 → NQ = 32, where the 64-row
// l_step_columns_kernel ran half its rows on padding):
//   pass 1: per-query base-2 log-partition lse_i = log2 Σ_c 2^(u_c,i), an online max / sum per query
//           column in each thread, combined across the 8 lanes of a column and across the warps;
//   pass 2: Pᵀ = 2^(u − lse_i) (0 for invalid or padding queries), aR = Pᵀ·q (tensor cores) and
//           cR = Σ_i Pᵀ, stored per candidate row.
constexpr int kCandWarps = 4;
constexpr int kCandTile = 16 * kCandWarps;  // candidates per streamed tile

template <int D, int NQ16>
struct LColsCandCfg {
  static constexpr int NQ = 16 * NQ16;
  static_assert(D == 64 || D == 128, "l_step_columns_cand_kernel: head dim 64 or 128 (mma fragments of 16)");
  static_assert(NQ16 >= 1 && NQ16 <= 4, "l_step_columns_cand_kernel: b1 <= 64 (the queries of a column stay in registers' reach)");
};

template <int D, typename T, int NQ16>
constexpr size_t l_cols_cand_smem_bytes() {
  constexpr int NQ = 16 * NQ16;
  return size_t(NQ + 2 * kCandTile) * Smem<D>::kLd * sizeof(T)       // queries, two candidate tiles
         + size_t(2 * kCandTile) * sizeof(float)                     // cL of the two tiles
         + size_t(2 * kCandWarps * NQ + NQ) * sizeof(float);         // per-warp (max, sum), lse
}

// Issue the loads of candidate tile [c0, c0 + kCandTile): aL rows (zero-filled past nCand) and cL.
template <typename T, int D>
__device__ __forceinline__ void l_cols_cand_issue(T* sC, float* sBias, const MonarchParams& p, const Column& col, int c0) {
  const T* aLg = static_cast<const T*>(p.aL);
  load_tile_async<kCandTile, D, 32 * kCandWarps>(sC, aLg, [&](int r) -> const T* {
    return c0 + r < col.nCand ? aLg + cand_index(p, col, c0 + r) * D : nullptr;
  });
  if (threadIdx.x < kCandTile) {
    const int c = c0 + static_cast<int>(threadIdx.x);
    const bool ok = c < col.nCand;
    cp_async4(sBias + threadIdx.x, p.cL + (ok ? cand_index(p, col, c) : col.candBase), ok);
  }
}

template <typename T, int D, int NQ16>
__global__ void __launch_bounds__(32 * kCandWarps, 3) l_step_columns_cand_kernel(MonarchParams p) {
  constexpr int LD = Smem<D>::kLd;
  constexpr int NQ = LColsCandCfg<D, NQ16>::NQ, NT = 32 * kCandWarps, CT = kCandTile;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);                      // [NQ][LD]  queries i (rows >= b1 zero)
  T* sC = sQ + NQ * LD;                                        // [2][CT][LD]  aL candidate tiles
  float* sBias = reinterpret_cast<float*>(sC + 2 * CT * LD);   // [2][CT]  cL (natural units)
  float* sM = sBias + 2 * CT;                                  // [warps][NQ]  pass-1 partial max (base 2)
  float* sL = sM + kCandWarps * NQ;                            // [warps][NQ]  pass-1 partial sum
  float* sLse = sL + kCandWarps * NQ;                          // [NQ]  lse2 per query; +INF ⇒ L column zero

  const Column col = column_of(p, blockIdx.x);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, qd = lane % 4;
  const int nCT = (col.nCand + CT - 1) / CT;  // >= 1 (nCand >= b1 >= 1)
  const float scale2 = p.scale * kLog2e;

  const T* qg = static_cast<const T*>(p.q.data) + col.b * p.q.sB + col.h * p.q.sH + col.qTok0 * p.q.sS;
  const int64_t qStride = int64_t(p.b2) * p.q.sS;
  const uint8_t* qv = p.queryValid ? p.queryValid + int64_t(col.b) * p.Aq * p.b1 * p.b2 + col.qTok0 : nullptr;

  // Logits of this warp's 16 candidates of the tile in buffer buf against the NQ queries, base 2 and
  // biased: S[n][e] is candidate row g + 8·(e >> 1), query column n·8 + 2·qd + (e & 1). checked (pass 1):
  // a masked candidate's logit is −INF and a visible one's non-finite logit NaN (visible_logit), so that
  // lse is NaN for a query that sees one (l_step_config.cuh); pass 2 needs no check (lse is NaN then).
  auto logits = [&](bool checked, float (&S)[NQ / 8][4], int buf, int c0) {  // checked: a literal, folded
    uint32_t ca[D / 16][4];
    load_a_frags<D>(ca, sC + buf * CT * LD + warp * 16 * LD, lane);
    warp_gemm_abt<D, NQ, T>(S, ca, sQ, lane);
    float bias[2];
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int r = warp * 16 + g + 8 * hh;
      bias[hh] = c0 + r < col.nCand ? sBias[buf * CT + r] * kLog2e : INFINITY;
    }
#pragma unroll
    for (int n = 0; n < NQ / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float x = S[n][e] * scale2 - bias[e >> 1];
        S[n][e] = !checked ? x : bias[e >> 1] < INFINITY ? visible_logit(x) : -INFINITY;
      }
  };

  // ---- pass 1: lse_i over all candidates --------------------------------------------------
  load_rows_async<NQ, D, NT>(sQ, qg, qStride, p.b1);
  l_cols_cand_issue<T, D>(sC, sBias, p, col, 0);
  cp_async_commit();
  float m[NQ / 8][2], l[NQ / 8][2];
#pragma unroll
  for (int n = 0; n < NQ / 8; ++n) m[n][0] = m[n][1] = -INFINITY, l[n][0] = l[n][1] = 0.f;
  for (int t = 0; t < nCT; ++t) {
    const int buf = t & 1;
    cp_async_wait<0>();  // tile t (and, for t = 0, the queries) landed
    __syncthreads();     // ... for every thread; and every warp is done with tile t - 1's buffer
    if (t + 1 < nCT) l_cols_cand_issue<T, D>(sC + (buf ^ 1) * CT * LD, sBias + (buf ^ 1) * CT, p, col, (t + 1) * CT);
    cp_async_commit();
    float S[NQ / 8][4];
    logits(true, S, buf, t * CT);
#pragma unroll
    for (int n = 0; n < NQ / 8; ++n)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const float x0 = S[n][c], x1 = S[n][c + 2];
        const float mn = fmaxf(m[n][c], fmaxf(x0, x1));
        const float mu = mn == -INFINITY ? 0.f : mn;  // 2^(−INF − mu) = 0; a NaN logit makes ℓ NaN
        l[n][c] = l[n][c] * fast_exp2(m[n][c] - mu) + fast_exp2(x0 - mu) + fast_exp2(x1 - mu);
        m[n][c] = mn;
      }
  }
  // Combine the 8 lanes (g) of each query column, then the warps.
#pragma unroll
  for (int n = 0; n < NQ / 8; ++n)
#pragma unroll
    for (int c = 0; c < 2; ++c)
#pragma unroll
      for (int off = 4; off < 32; off <<= 1) {
        const float mo = __shfl_xor_sync(0xffffffffu, m[n][c], off);
        const float lo = __shfl_xor_sync(0xffffffffu, l[n][c], off);
        const float mn = fmaxf(m[n][c], mo);
        const float mu = mn == -INFINITY ? 0.f : mn;
        l[n][c] = l[n][c] * fast_exp2(m[n][c] - mu) + lo * fast_exp2(mo - mu);
        m[n][c] = mn;
      }
  if (g == 0) {
#pragma unroll
    for (int n = 0; n < NQ / 8; ++n)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int i = n * 8 + 2 * qd + c;
        sM[warp * NQ + i] = m[n][c];
        sL[warp * NQ + i] = l[n][c];
      }
  }
  __syncthreads();
  if (threadIdx.x < NQ) {
    const int i = threadIdx.x;
    float mm = -INFINITY;
#pragma unroll
    for (int w = 0; w < kCandWarps; ++w) mm = fmaxf(mm, sM[w * NQ + i]);
    const float mu = mm == -INFINITY ? 0.f : mm;
    float ll = 0.f;
#pragma unroll
    for (int w = 0; w < kCandWarps; ++w) ll += sL[w * NQ + i] * fast_exp2(sM[w * NQ + i] - mu);
    // (a NaN ℓ passes: lse is NaN then, and so are the aR, cR it feeds, as on the CPU)
    const bool valid = i < p.b1 && !(ll <= 0.f) && (qv == nullptr || qv[int64_t(i) * p.b2] != 0);
    sLse[i] = valid ? mm + log2f(ll) : INFINITY;
  }
  // sLse is read after the pass-2 loop's first barrier.

  // ---- pass 2: aR, cR for each candidate tile ---------------------------------------------
  l_cols_cand_issue<T, D>(sC, sBias, p, col, 0);  // buffer 0: tile nCT - 1 used buffer (nCT - 1) & 1 ...
  cp_async_commit();                              // ... and every warp passed the barrier above
  for (int t = 0; t < nCT; ++t) {
    const int buf = t & 1;
    cp_async_wait<0>();
    __syncthreads();
    if (t + 1 < nCT) l_cols_cand_issue<T, D>(sC + (buf ^ 1) * CT * LD, sBias + (buf ^ 1) * CT, p, col, (t + 1) * CT);
    cp_async_commit();
    float S[NQ / 8][4];
    logits(false, S, buf, t * CT);
    float csum[2] = {0.f, 0.f};
#pragma unroll
    for (int n = 0; n < NQ / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float pr = fast_exp2(S[n][e] - sLse[n * 8 + 2 * qd + (e & 1)]);
        csum[e >> 1] += pr;
        S[n][e] = pr;
      }
    uint32_t pa[NQ / 16][4];
    c_to_a_frags<NQ, T>(pa, S);
    float acc[D / 8][4];
    zero_acc<D>(acc);
    warp_gemm_ab<D, NQ, T>(acc, pa, sQ, lane);  // aR rows = Pᵀ·q

    store_ar_cr<D, T>(p, col, acc, csum, t * CT + warp * 16, lane);
  }
  cp_async_wait<0>();  // only an empty group can be pending here
}

template <typename T, int D, int NQ16>
Status launch_l_columns_cand(const MonarchParams& p, int64_t columns, cudaStream_t s) {
  auto kernel = l_step_columns_cand_kernel<T, D, NQ16>;
  const size_t smem = l_cols_cand_smem_bytes<D, T, NQ16>();
  Status st = prepare_smem(kernel, smem, "l_step_columns_cand_kernel");
  if (!st.ok) return st;
  kernel<<<unsigned(columns), 32 * kCandWarps, smem, s>>>(p);
  return launch_status("l_step_columns_cand_kernel");
}

}  // namespace
}  // namespace cuda
}  // namespace monarch
