// l_step_columns_resident_kernel.cuh — the non-final L-step with a column's candidates read once: every
// aL row of the column (and its cL) is loaded into shared memory at the start and both passes run from
// there, so aL crosses HBM once instead of twice (l_step_columns_cand_kernel streams it per pass; at Wan
// 480p the second read mostly misses L2: ~400 columns in flight × 161 KB each).
//   L = softmax_c(u) of every query of a column, then aR = Σ_i L·q and cR = Σ_i L (l_step.cu).
#pragma once

#include "l_step_cand_rows.cuh"

namespace monarch {
namespace cuda {
namespace {  // this header is included by l_step.cu only

// One CTA of NW warps per (b, h, a, j) column (one CTA per SM where the rows take most of the shared
// memory). The candidate rows arrive in groups of 16·NW rows, one cp.async group each, all issued at the
// start: pass 1 (l_step_columns_cand_kernel's: logits of 16 candidates per warp against the NQ resident
// queries, an online max / sum per query) takes group t as soon as it has landed; pass 2 then walks the
// rows again from shared memory (warp w: row blocks w, w + NW, …) and sends each block's aR rows out
// through the block's own rows as 16-byte stores.
template <int D, typename T, int NQ16, int NW>
struct LColsResident {
  static constexpr int NQ = 16 * NQ16;
  static constexpr int kThreads = 32 * NW;
  static constexpr int kGroupRows = 16 * NW;
  // Rows of shared memory for columns of up to nCand candidates (whole row blocks of 16).
  MONARCH_HOST_DEVICE static int rows_for(int nCand) { return (nCand + 15) / 16 * 16; }
  static size_t smem_bytes(int rows) {
    return size_t(NQ + rows) * Smem<D>::kLd * sizeof(T)  // queries, candidate rows
           + size_t(rows) * sizeof(float)                // cL (natural units)
           + size_t(2 * NW * NQ + NQ) * sizeof(float);   // per-warp (max, sum), lse
  }
};

// cp.async.wait_group with a run-time bound: waits until at most min(n, 7) groups are pending (waiting
// for more than n is never wrong, only later).
__device__ __forceinline__ void cp_async_wait_upto(int n) {
  switch (n) {
    case 0: cp_async_wait<0>(); break;
    case 1: cp_async_wait<1>(); break;
    case 2: cp_async_wait<2>(); break;
    case 3: cp_async_wait<3>(); break;
    case 4: cp_async_wait<4>(); break;
    case 5: cp_async_wait<5>(); break;
    case 6: cp_async_wait<6>(); break;
    default: cp_async_wait<7>(); break;
  }
}

// Issue rows [r0, r1) of the column's candidate list (aL rows, rows ≥ nCand zero-filled) and their cL
// into sC / sBias, NT threads: thread t takes 16-byte chunk t % (D/8) of rows r0 + t / (D/8) + i·(NT / (D/8)),
// walking (f, k) along without a division per row.
template <typename T, int D, int NT>
__device__ __forceinline__ void resident_issue(T* sC, float* sBias, const MonarchParams& p, const Column& col, int r0,
                                               int r1) {
  constexpr int kChunksPerRow = D / 8, kRowStep = NT / kChunksPerRow;
  static_assert(NT % kChunksPerRow == 0, "whole rows per thread step");
  const T* aLg = static_cast<const T*>(p.aL);
  const int cc = int(threadIdx.x) % kChunksPerRow;
  int r = r0 + int(threadIdx.x) / kChunksPerRow;
  int f = r / p.b1, k = r - f * p.b1;
  const int df = kRowStep / p.b1, dk = kRowStep - df * p.b1;
  for (; r < r1; r += kRowStep) {
    const bool ok = r < col.nCand;
    const int64_t idx = col.candBase + int64_t(f) * p.b2 * p.b1 + k;
    cp_async16(sC + r * Smem<D>::kLd + cc * 8, ok ? aLg + idx * D + cc * 8 : aLg, ok);
    if (cc == 0) cp_async4(sBias + r, p.cL + (ok ? idx : col.candBase), ok);
    f += df;
    k += dk;
    if (k >= p.b1) k -= p.b1, ++f;
  }
}

template <typename T, int D, int NQ16, int NW>
__global__ void __launch_bounds__(32 * NW, 1) l_step_columns_resident_kernel(MonarchParams p) {
  using Cfg = LColsResident<D, T, NQ16, NW>;
  constexpr int LD = Smem<D>::kLd;
  constexpr int NQ = Cfg::NQ, NT = Cfg::kThreads, GR = Cfg::kGroupRows;
  const Column col = column_of(p, blockIdx.x);
  const int rows = Cfg::rows_for(col.nCand);
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);                     // [NQ][LD]  queries i (rows >= b1 zero)
  T* sC = sQ + NQ * LD;                                       // [rows][LD]  the column's aL rows
  float* sBias = reinterpret_cast<float*>(sC + rows * LD);    // [rows]  cL (natural units)
  float* sM = sBias + rows;                                   // [NW][NQ]  pass-1 partial max (base 2)
  float* sL = sM + NW * NQ;                                   // [NW][NQ]  pass-1 partial sum
  float* sLse = sL + NW * NQ;                                 // [NQ]  lse2 per query; +INF ⇒ L column zero

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int nG = (rows + GR - 1) / GR;  // >= 1 (nCand >= b1 >= 1)
  const float scale2 = p.scale * kLog2e;
  const T* qg = static_cast<const T*>(p.q.data) + col.b * p.q.sB + col.h * p.q.sH + col.qTok0 * p.q.sS;
  const int64_t qStride = int64_t(p.b2) * p.q.sS;
  const uint8_t* qv = p.queryValid ? p.queryValid + int64_t(col.b) * p.Aq * p.b1 * p.b2 + col.qTok0 : nullptr;

  load_rows_async<NQ, D, NT>(sQ, qg, qStride, p.b1);  // with group 0
  for (int t = 0; t < nG; ++t) {
    resident_issue<T, D, NT>(sC, sBias, p, col, t * GR, min(rows, (t + 1) * GR));
    cp_async_commit();
  }

  // ---- pass 1: lse_i over all candidates, group by group as they land ------------------------
  CandLse<NQ> st;
  st.init();
  for (int t = 0; t < nG; ++t) {
    cp_async_wait_upto(nG - 1 - t);  // group t (and, for t = 0, the queries) landed for this thread ...
    __syncthreads();                 // ... and for every thread
    const int c0 = t * GR + warp * 16;
    if (c0 < col.nCand) {  // warp-uniform
      float S[NQ / 8][4];
      cand_logits<D, NQ, T>(true, S, sC + c0 * LD, sBias + c0, c0, col.nCand, sQ, scale2, lane);
      st.add(S);
    }
  }
  st.template combine<NW>(sM, sL, sLse, p.b1, qv, p.b2, warp, lane);
  __syncthreads();  // sLse

  // ---- pass 2: aR, cR per row block, from shared memory ----------------------------------------
  for (int c0 = warp * 16; c0 < col.nCand; c0 += NW * 16)
    cand_ar_rows<D, NQ, T, true>(p, col, sC + c0 * LD, sBias + c0, c0, sQ, sLse, scale2, lane);
}

// MONARCH_L_COLS_RESIDENT=0 (read once; an A/B switch): the non-final L-step streams the candidates twice
// (l_step_columns_cand_kernel) even where the resident kernel fits. MONARCH_L_RESIDENT_WARPS=16: 16-warp
// CTAs instead of 8.
inline bool l_cols_resident_on() {
  static const bool off = tma::env_is("MONARCH_L_COLS_RESIDENT", "0");
  return !off;
}
inline int l_cols_resident_warps() {
  static const int w = tma::env_is("MONARCH_L_RESIDENT_WARPS", "16") ? 16 : 8;
  return w;
}

// Launch it if the longest column's rows fit in shared memory; *launched says whether it did.
template <typename T, int D, int NQ16, int NW>
Status launch_l_columns_resident_nw(const MonarchParams& p, int64_t columns, cudaStream_t s, bool* launched) {
  using Cfg = LColsResident<D, T, NQ16, NW>;
  *launched = false;
  const int64_t maxCand = int64_t(p.Fk) * p.b1;
  if (maxCand > (int64_t(1) << 20)) return Status::Ok();
  const size_t smem = Cfg::smem_bytes(Cfg::rows_for(int(maxCand)));
  if (smem > smem_optin_limit()) return Status::Ok();
  auto kernel = l_step_columns_resident_kernel<T, D, NQ16, NW>;
  Status st = prepare_smem(kernel, smem, "l_step_columns_resident_kernel");
  if (!st.ok) return st;
  kernel<<<unsigned(columns), Cfg::kThreads, smem, s>>>(p);
  *launched = true;
  return launch_status("l_step_columns_resident_kernel");
}
template <typename T, int D, int NQ16>
Status launch_l_columns_resident(const MonarchParams& p, int64_t columns, cudaStream_t s, bool* launched) {
  *launched = false;
  if (!l_cols_resident_on()) return Status::Ok();
  return l_cols_resident_warps() == 16 ? launch_l_columns_resident_nw<T, D, NQ16, 16>(p, columns, s, launched)
                                       : launch_l_columns_resident_nw<T, D, NQ16, 8>(p, columns, s, launched);
}

}  // namespace
}  // namespace cuda
}  // namespace monarch
