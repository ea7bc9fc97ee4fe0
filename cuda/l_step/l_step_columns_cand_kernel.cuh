// l_step_columns_cand_kernel.cuh — the non-final L-step for b1 <= 64 with the candidates on the mma rows in
// both passes: L = softmax_c(u) of every query of a column, then aR = Σ_i L·q and cR = Σ_i L.
#pragma once

#include "l_step_cand_rows.cuh"

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

template <typename T, int D, int NQ16, bool kStaged>
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
  const int nCT = (col.nCand + CT - 1) / CT;  // >= 1 (nCand >= b1 >= 1)
  const float scale2 = p.scale * kLog2e;

  const T* qg = static_cast<const T*>(p.q.data) + col.b * p.q.sB + col.h * p.q.sH + col.qTok0 * p.q.sS;
  const int64_t qStride = int64_t(p.b2) * p.q.sS;
  const uint8_t* qv = p.queryValid ? p.queryValid + int64_t(col.b) * p.Aq * p.b1 * p.b2 + col.qTok0 : nullptr;

  // ---- pass 1: lse_i over all candidates --------------------------------------------------
  load_rows_async<NQ, D, NT>(sQ, qg, qStride, p.b1);
  l_cols_cand_issue<T, D>(sC, sBias, p, col, 0);
  cp_async_commit();
  CandLse<NQ> st;
  st.init();
  for (int t = 0; t < nCT; ++t) {
    const int buf = t & 1;
    cp_async_wait<0>();  // tile t (and, for t = 0, the queries) landed
    __syncthreads();     // ... for every thread; and every warp is done with tile t - 1's buffer
    if (t + 1 < nCT) l_cols_cand_issue<T, D>(sC + (buf ^ 1) * CT * LD, sBias + (buf ^ 1) * CT, p, col, (t + 1) * CT);
    cp_async_commit();
    float S[NQ / 8][4];
    cand_logits<D, NQ, T>(true, S, sC + buf * CT * LD + warp * 16 * LD, sBias + buf * CT + warp * 16,
                          t * CT + warp * 16, col.nCand, sQ, scale2, lane);
    st.add(S);
  }
  st.template combine<kCandWarps>(sM, sL, sLse, p.b1, qv, p.b2, warp, lane);
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
    // kStaged: the aR rows go out through this warp's 16 rows of the buffer, which only the next
    // iteration's refill (after its barrier) overwrites.
    cand_ar_rows<D, NQ, T, kStaged>(p, col, sC + buf * CT * LD + warp * 16 * LD, sBias + buf * CT + warp * 16,
                                   t * CT + warp * 16, sQ, sLse, scale2, lane);
  }
  cp_async_wait<0>();  // only an empty group can be pending here
}

// MONARCH_L_COLS_STORE=direct (read once; an A/B switch): the aR rows leave as 4-byte stores from the
// fragments instead of through the warp's free buffer rows.
inline bool l_cols_staged_stores() {
  static const bool direct = tma::env_is("MONARCH_L_COLS_STORE", "direct");
  return !direct;
}

template <typename T, int D, int NQ16>
Status launch_l_columns_cand(const MonarchParams& p, int64_t columns, cudaStream_t s) {
  auto kernel = l_cols_staged_stores() ? l_step_columns_cand_kernel<T, D, NQ16, true>
                                       : l_step_columns_cand_kernel<T, D, NQ16, false>;
  const size_t smem = l_cols_cand_smem_bytes<D, T, NQ16>();
  Status st = prepare_smem(kernel, smem, "l_step_columns_cand_kernel");
  if (!st.ok) return st;
  kernel<<<unsigned(columns), 32 * kCandWarps, smem, s>>>(p);
  return launch_status("l_step_columns_cand_kernel");
}

}  // namespace
}  // namespace cuda
}  // namespace monarch
