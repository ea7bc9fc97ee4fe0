// l_step_cand_rows.cuh — the per-warp pieces of the non-final L-step kernels that put 16 candidates on
// the mma rows (l_step_columns_cand_kernel.cuh, l_step_columns_resident_kernel.cuh): the biased logits
// Sᵀ = aL·qᵀ of 16 candidates against a column's NQ resident queries, the per-query log-partition
// combined over lanes and warps, and pass 2's aR = Pᵀ·q, cR = Σ_i Pᵀ with its stores.
#pragma once

#include "l_step_config.cuh"

namespace monarch {
namespace cuda {
namespace {  // included by l_step.cu only

// Logits of this warp's 16 candidates (rows sRows[0..16), the first one candidate c0; their cL, natural
// units, in sBias[0..16)) against the NQ queries sQ, base 2 and biased: S[n][e] is candidate row
// g + 8·(e >> 1), query column n·8 + 2·qd + (e & 1); rows c0 + r ≥ nCand get a +INF bias. checked
// (pass 1): a masked candidate's logit is −INF and a visible one's non-finite logit NaN (visible_logit),
// so that lse is NaN for a query that sees one (l_step_config.cuh); pass 2 needs no check (lse is NaN then).
template <int D, int NQ, typename T>
__device__ __forceinline__ void cand_logits(bool checked, float (&S)[NQ / 8][4], const T* sRows, const float* sBias,
                                            int c0, int nCand, const T* sQ, float scale2, int lane) {
  constexpr int LD = Smem<D>::kLd;
  const int g = lane / 4;
  uint32_t ca[D / 16][4];
  load_a_frags<D>(ca, sRows, lane);
  warp_gemm_abt<D, NQ, T>(S, ca, sQ, lane);
  float bias[2];
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int r = g + 8 * hh;
    bias[hh] = c0 + r < nCand ? sBias[r] * kLog2e : INFINITY;
  }
#pragma unroll
  for (int n = 0; n < NQ / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float x = S[n][e] * scale2 - bias[e >> 1];
      S[n][e] = !checked ? x : bias[e >> 1] < INFINITY ? visible_logit(x) : -INFINITY;
    }
  (void)LD;
}

// Pass 1's per-thread state: an online max / sum (base 2) per query column of this thread.
template <int NQ>
struct CandLse {
  float m[NQ / 8][2], l[NQ / 8][2];
  __device__ __forceinline__ void init() {
#pragma unroll
    for (int n = 0; n < NQ / 8; ++n) m[n][0] = m[n][1] = -INFINITY, l[n][0] = l[n][1] = 0.f;
  }
  // Fold one tile of checked logits (cand_logits) in.
  __device__ __forceinline__ void add(const float (&S)[NQ / 8][4]) {
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
  // Combine the 8 lanes (g) of each query column, then the NW warps (through sM, sL: [NW][NQ]) into
  // sLse[i] = lse2 of query i (+INF: its L column is zero — padding, an invalid query, or nothing seen).
  // Called by every thread of the CTA; sLse is readable after the barrier that follows (the caller's).
  template <int NW>
  __device__ __forceinline__ void combine(float* sM, float* sL, float* sLse, int b1, const uint8_t* qv, int64_t qvStride,
                                          int warp, int lane) {
    const int g = lane / 4, qd = lane % 4;
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
      for (int w = 0; w < NW; ++w) mm = fmaxf(mm, sM[w * NQ + i]);
      const float mu = mm == -INFINITY ? 0.f : mm;
      float ll = 0.f;
#pragma unroll
      for (int w = 0; w < NW; ++w) ll += sL[w * NQ + i] * fast_exp2(sM[w * NQ + i] - mu);
      // (a NaN ℓ passes: lse is NaN then, and so are the aR, cR it feeds, as on the CPU)
      const bool valid = i < b1 && !(ll <= 0.f) && (qv == nullptr || qv[int64_t(i) * qvStride] != 0);
      sLse[i] = valid ? mm + log2f(ll) : INFINITY;
    }
  }
};

// store_ar_cr (l_step_config.cuh) through 16 rows of shared memory that this warp alone uses (row stride
// Smem<D>::kLd): the aR rows leave as 16-byte stores, D / 8 lanes per row, instead of 4-byte ones from the
// fragments (same values). Warp-synchronous; sStage is free again on return.
template <int D, typename T>
__device__ __forceinline__ void store_ar_cr_staged(const MonarchParams& p, const Column& col, const float (&acc)[D / 8][4],
                                                   const float (&csum)[2], int wc0, int lane, T* sStage) {
  constexpr int LD = Smem<D>::kLd;
  constexpr int kChunksPerRow = D / 8;
  const int g = lane / 4, qd = lane % 4;
  // Lane r < 16 holds the aR element index of row r (−1: past the column's candidates).
  const int64_t myRow = lane < 16 && wc0 + lane < col.nCand ? ar_index(p, col, wc0 + lane) * D : -1;
  __syncwarp();  // the lanes' earlier reads of these rows (the logits' ldmatrix) are done
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
      *reinterpret_cast<uint32_t*>(sStage + (g + 8 * h) * LD + n * 8 + 2 * qd) = pack2<T>(acc[n][2 * h], acc[n][2 * h + 1]);
  }
  __syncwarp();
  T* aR = static_cast<T*>(p.aR);
#pragma unroll
  for (int it = 0; it < 16 * kChunksPerRow / 32; ++it) {
    const int c = it * 32 + lane;
    const int r = c / kChunksPerRow, cc = (c % kChunksPerRow) * 8;
    const int64_t row = __shfl_sync(0xffffffffu, myRow, r);
    if (row >= 0) *reinterpret_cast<uint4*>(aR + row + cc) = *reinterpret_cast<const uint4*>(sStage + r * LD + cc);
  }
  __syncwarp();
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const float cs = quad_sum(csum[hh]);
    const int c = wc0 + g + 8 * hh;
    if (qd == 0 && c < col.nCand) p.cR[ar_index(p, col, c)] = cs;
  }
}

// Pass 2 for this warp's 16 candidates (rows sRows, first candidate wc0): Pᵀ = 2^(u − lse_i) (0 for
// invalid or padding queries: lse = +INF), aR = Pᵀ·q (tensor cores) and cR = Σ_i Pᵀ, stored per candidate
// row — through sRows itself when kStaged (the rows are no longer read once the logits are formed).
template <int D, int NQ, typename T, bool kStaged>
__device__ __forceinline__ void cand_ar_rows(const MonarchParams& p, const Column& col, T* sRows, const float* sBias,
                                             int wc0, const T* sQ, const float* sLse, float scale2, int lane) {
  const int qd = lane % 4;
  float S[NQ / 8][4];
  cand_logits<D, NQ, T>(false, S, sRows, sBias, wc0, col.nCand, sQ, scale2, lane);
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
  if constexpr (kStaged) {
    store_ar_cr_staged<D, T>(p, col, acc, csum, wc0, lane, sRows);
  } else {
    store_ar_cr<D, T>(p, col, acc, csum, wc0, lane);
  }
}

}  // namespace
}  // namespace cuda
}  // namespace monarch
