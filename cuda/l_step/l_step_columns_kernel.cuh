// l_step_columns_kernel.cuh — the non-final L-step: L = softmax_c(u) of every query of a column, then the
// column reductions aR = Σ_i L·q and cR = Σ_i L for the next R-step (two passes, tensor-core Lᵀ·Q). Any b1.
#pragma once

#include "l_step_config.cuh"

namespace monarch {
namespace cuda {
namespace {  // this header is included by l_step.cu only

// Shared memory (non-final kernel): a 64-row tile, two double-buffered 64-row tiles, and 2×64 candidate biases.
template <int D, typename T>
constexpr size_t l_step_smem_bytes() {
  return size_t(kBM + 2 * kBN) * Smem<D>::kLd * sizeof(T) + 2 * kBN * sizeof(float);
}

// ---------------------------------------------------------------------------------------------
template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 2) l_step_columns_kernel(MonarchParams p) {
  static_assert(D == 64 || D == 128, "l_step_columns_kernel: head dim 64 or 128 (mma fragments of 16, 16-byte rows)");
  constexpr int LD = Smem<D>::kLd;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sA = reinterpret_cast<T*>(smem_raw);                      // [kBM][LD] pass 1: queries; pass 2: aL
  T* sB = sA + kBM * LD;                                       // [2][kBN][LD] pass 1: aL; pass 2: queries
  float* sBias = reinterpret_cast<float*>(sB + 2 * kBN * LD);  // [2][kBN] pass 1: cL·log2e
  float* sLse = sBias + 2 * kBN;  // [nQB·64] base-2 lse per query; +INF ⇒ L column is zero

  const Column col = column_of(p, blockIdx.x);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, qd = lane % 4;
  const int nQB = (p.b1 + kBM - 1) / kBM;
  const int nCT = (col.nCand + kBN - 1) / kBN;
  const float scale2 = p.scale * kLog2e;

  const T* qg = static_cast<const T*>(p.q.data) + col.b * p.q.sB + col.h * p.q.sH + col.qTok0 * p.q.sS;
  const int64_t qStride = int64_t(p.b2) * p.q.sS;
  const uint8_t* qv =
      p.queryValid ? p.queryValid + int64_t(col.b) * p.Aq * p.b1 * p.b2 + col.qTok0 : nullptr;
  const T* aLg = static_cast<const T*>(p.aL);

  auto load_q = [&](T* dst, int i0) {
    load_tile_async<kBM, D, kThreads>(dst, qg, [&](int r) -> const T* {
      return i0 + r < p.b1 ? qg + int64_t(i0 + r) * qStride : nullptr;
    });
  };
  auto load_cand = [&](T* dst, int c0) {
    load_tile_async<kBN, D, kThreads>(dst, aLg, [&](int r) -> const T* {
      return c0 + r < col.nCand ? aLg + cand_index(p, col, c0 + r) * D : nullptr;
    });
  };

  // ---- pass 1: lse_i over all candidates --------------------------------------------------
  for (int qb = 0; qb < nQB; ++qb) {
    load_q(sA, qb * kBM);
    auto load_ct = [&](int t, int buf) {
      load_cand(sB + buf * kBN * LD, t * kBN);
      if (threadIdx.x < kBN) {
        const int c = t * kBN + threadIdx.x;
        sBias[buf * kBN + threadIdx.x] = c < col.nCand ? p.cL[cand_index(p, col, c)] * kLog2e : INFINITY;
      }
    };
    if (nCT > 0) load_ct(0, 0);
    cp_async_commit();
    uint32_t qa[D / 16][4];
    OnlineSoftmax<kBN, false> sm;
    sm.init();
    for (int t = 0; t < nCT; ++t) {
      const int buf = t & 1;
      if (t + 1 < nCT) {
        load_ct(t + 1, buf ^ 1);
        cp_async_commit();
        cp_async_wait<1>();
      } else {
        cp_async_wait<0>();
      }
      __syncthreads();
      if (t == 0) load_a_frags<D>(qa, sA + warp * 16 * LD, lane);
      float S[kBN / 8][4];
      warp_gemm_abt<D, kBN, T>(S, qa, sB + buf * kBN * LD, lane);
      float mn[2] = {INFINITY, INFINITY};  // smallest raw score per row: a visible −Inf logit (l_step_config.cuh)
#pragma unroll
      for (int n = 0; n < kBN / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          mn[e >> 1] = fminf(mn[e >> 1], S[n][e]);
          S[n][e] = S[n][e] * scale2 - sBias[buf * kBN + n * 8 + 2 * qd + (e & 1)];
        }
      }
      float alpha[2];
      sm.update(S, alpha);
      sm.poison_neg_inf(S, mn, scale2);
      __syncthreads();
    }
    cp_async_wait<0>();
    sm.finalize();
    if (qd == 0) {
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int i = qb * kBM + warp * 16 + g + 8 * hh;
        const bool valid = i < p.b1 && !(sm.l[hh] <= 0.f) &&  // NaN ℓ: lse NaN, propagates
                            (qv == nullptr || qv[int64_t(i) * p.b2] != 0);
        sLse[i] = valid ? sm.m[hh] + log2f(sm.l[hh]) : INFINITY;
      }
    }
    __syncthreads();  // sA / sB are reused by the next query block (and by pass 2)
  }

  // ---- pass 2: aR, cR for each candidate block --------------------------------------------
  for (int cb = 0; cb < nCT; ++cb) {
    const int c0 = cb * kBM;
    load_cand(sA, c0);
    load_q(sB, 0);
    cp_async_commit();
    float rowBias[2];  // cL·log2e of this thread's two candidate rows (+INF: masked / padding)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int c = c0 + warp * 16 + g + 8 * hh;
      rowBias[hh] = c < col.nCand ? p.cL[cand_index(p, col, c)] * kLog2e : INFINITY;
    }
    uint32_t ca[D / 16][4];
    float acc[D / 8][4];
    zero_acc<D>(acc);
    float csum[2] = {0.f, 0.f};
    for (int t = 0; t < nQB; ++t) {
      const int buf = t & 1;
      if (t + 1 < nQB) {
        load_q(sB + (buf ^ 1) * kBN * LD, (t + 1) * kBN);
        cp_async_commit();
        cp_async_wait<1>();
      } else {
        cp_async_wait<0>();
      }
      __syncthreads();
      if (t == 0) load_a_frags<D>(ca, sA + warp * 16 * LD, lane);
      float S[kBN / 8][4];  // Sᵀ[c, i]
      warp_gemm_abt<D, kBN, T>(S, ca, sB + buf * kBN * LD, lane);
#pragma unroll
      for (int n = 0; n < kBN / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float x = S[n][e] * scale2 - rowBias[e >> 1] - sLse[t * kBN + n * 8 + 2 * qd + (e & 1)];
          const float pr = fast_exp2(x);
          csum[e >> 1] += pr;
          S[n][e] = pr;
        }
      }
      uint32_t pa[kBN / 16][4];
      c_to_a_frags<kBN, T>(pa, S);
      warp_gemm_ab<D, kBN, T>(acc, pa, sB + buf * kBN * LD, lane);
      __syncthreads();
    }
    cp_async_wait<0>();

    store_ar_cr<D, T>(p, col, acc, csum, c0 + warp * 16, lane);
  }
}

template <typename T, int D>
Status launch_l_columns(const MonarchParams& p, int64_t columns, cudaStream_t s) {
  auto kernel = l_step_columns_kernel<T, D>;
  const int64_t nQB = (p.b1 + kBM - 1) / kBM;
  const size_t smem = l_step_smem_bytes<D, T>() + size_t(nQB) * kBM * sizeof(float);  // + lse
  Status st = prepare_smem(kernel, smem, "l_step_columns_kernel");
  if (!st.ok) return st;
  kernel<<<unsigned(columns), kThreads, smem, s>>>(p);
  return launch_status("l_step_columns_kernel");
}

}  // namespace
}  // namespace cuda
}  // namespace monarch
