// r_step_persist_kernel.cuh — the first R-step (L = I) for key rows too long for the row-wise kernel: persistent
// over the key tiles f, key subtiles streamed through a cp.async ring with online softmax. Any b2.
#pragma once

#include "r_step_config.cuh"

namespace monarch {
namespace cuda {
namespace {  // this header is included by r_step.cu only

// ---------------------------------------------------------------------------------------------
// First R-step (L = I: the queries q[a,k,j] do not depend on f), persistent over the key tiles f.
// One CTA of 4 warps per (b, h, a, key row k, block of kBM query columns j) loops over the allowed key
// tiles f ∈ [0, fLim): the query block is loaded once, and the (f, key-subtile) stream of K (and V)
// tiles runs through a kRpStages-deep cp.async ring, so the loads of the next tiles (and the stores of
// the previous f's aL / y) overlap the current tile's products. Per (f, k, j) the arithmetic is exactly
// that of r_step_later_kernel (same tile size kBN, same operation order), so the results are bit-identical.
constexpr int kRpStages = 4;

template <int D, typename T, bool kLast>
constexpr size_t r_persist_smem_bytes() {
  return size_t(kBM + kRpStages * r_step_bn<D, kLast>() * (kLast ? 2 : 1)) * Smem<D>::kLd * sizeof(T);
}

// Issue the cp.async loads of key tile (f, subtile lt) into one ring stage: K rows, then V rows (last).
template <typename T, int D, int kBN, bool kLast>
__device__ __forceinline__ void r_persist_issue(T* stage, const T* kg, const T* vg, int64_t kS, int64_t vS,
                                                int64_t tok, int nValid) {
  load_rows_async<kBN, D, kThreads>(stage, kg + tok * kS, kS, nValid);
  if constexpr (kLast) load_rows_async<kBN, D, kThreads>(stage + kBN * Smem<D>::kLd, vg + tok * vS, vS, nValid);
}

template <typename T, int D, bool kLast>
__global__ void __launch_bounds__(kThreads, 2) r_step_persist_kernel(MonarchParams p) {
  static_assert(D == 64 || D == 128, "r_step_persist_kernel: head dim 64 or 128 (mma fragments of 16, 16-byte rows)");
  constexpr int LD = Smem<D>::kLd;
  constexpr int kBN = r_step_bn<D, kLast>();
  constexpr int NS = kRpStages;
  constexpr int kStageElems = kBN * (kLast ? 2 : 1) * LD;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // [kBM][LD]  queries q (j), loaded once
  T* sRing = sQ + kBM * LD;                // [NS][kBN (K) (+ kBN (V))][LD]

  int64_t pid = blockIdx.x;
  const int kr = int(pid % p.b1);  pid /= p.b1;
  const int a = int(pid % p.Aq);   pid /= p.Aq;
  const int h = int(pid % p.H);
  const int b = int(pid / p.H);
  const int fLim = allowed_key_tiles(p, a);  // block-causal masking allows the prefix f < fLim

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, qd = lane % 4;
  const int j0 = blockIdx.y * kBM;
  const int b2 = p.b2;
  const int nTiles = (b2 + kBN - 1) / kBN;
  const int total = fLim * nTiles;
  const int64_t pair0 = ((int64_t(b) * p.H + h) * p.Aq + a) * p.Fk;  // pair index of (b, h, a, f = 0)
  const int64_t tileToks = int64_t(p.b1) * b2;                         // tokens per key tile f
  const int64_t kTok0 = int64_t(kr) * b2;                              // token of (f = 0, k, l = 0)

  const T* qrow0 = static_cast<const T*>(p.q.data) + b * p.q.sB + h * p.q.sH +
                   (int64_t(a) * p.b1 + kr) * b2 * p.q.sS;
  const T* kg = static_cast<const T*>(p.k.data) + b * p.k.sB + h * p.k.sH;
  const T* vg = static_cast<const T*>(p.v.data) + b * p.v.sB + h * p.v.sH;
  const uint8_t* kv = p.keyValid ? p.keyValid + int64_t(b) * p.Fk * tileToks + kTok0 : nullptr;

  // Prologue: the query block and the first NS-1 key tiles, one commit group per tile (the queries
  // ride in group 0).
  load_rows_async<kBM, D, kThreads>(sQ, qrow0 + int64_t(j0) * p.q.sS, p.q.sS, b2 - j0);
  int lf = 0, lt = 0;  // next tile to load
#pragma unroll
  for (int s = 0; s < NS - 1; ++s) {
    if (s < total) {
      r_persist_issue<T, D, kBN, kLast>(sRing + s * kStageElems, kg, vg, p.k.sS, p.v.sS,
                                        lf * tileToks + kTok0 + lt * kBN, b2 - lt * kBN);
      if (++lt == nTiles) lt = 0, ++lf;
    }
    cp_async_commit();
  }

  float scale2[2];  // first step: invT = 1
  scale2[0] = scale2[1] = p.scale * kLog2e;
  const int wj0 = j0 + warp * 16;

  float accK[D / 8][4];
  float accV[D / 8][4];  // dead (eliminated) unless kLast
  OnlineSoftmax<kBN, true> sm;
  int cf = 0, ct = 0;  // tile being computed: key tile f, subtile t
  for (int tau = 0; tau < total; ++tau) {
    cp_async_wait<NS - 2>();  // group tau (this tile) has landed
    __syncthreads();          // ... for every thread; and every thread is done with tile tau - 1
    if (tau + NS - 1 < total) {  // refill the stage tile tau - 1 used
      r_persist_issue<T, D, kBN, kLast>(sRing + ((tau + NS - 1) % NS) * kStageElems, kg, vg, p.k.sS, p.v.sS,
                                        lf * tileToks + kTok0 + lt * kBN, b2 - lt * kBN);
      if (++lt == nTiles) lt = 0, ++lf;
    }
    cp_async_commit();  // (possibly empty) group, keeps one group per iteration

    if (ct == 0) {
      zero_acc<D>(accK);
      if constexpr (kLast) zero_acc<D>(accV);
      sm.init();
    }
    const T* sK = sRing + (tau % NS) * kStageElems;
    float S[kBN / 8][4];
    warp_gemm_abt_smem<D, kBN, T>(S, sQ + warp * 16 * LD, sK, lane);
    const uint8_t* kvf = kv ? kv + int64_t(cf) * tileToks : nullptr;
    scale_mask_logits<kBN>(S, ct * kBN, b2, kvf, scale2, qd);
    float alpha[2];
    sm.update(S, alpha);
    rescale_rows<D>(accK, alpha);
    uint32_t pa[kBN / 16][4];
    c_to_a_frags<kBN, T>(pa, S);
    warp_gemm_ab<D, kBN, T>(accK, pa, sK, lane);
    if constexpr (kLast) {
      rescale_rows<D>(accV, alpha);
      warp_gemm_ab<D, kBN, T>(accV, pa, sK + kBN * LD, lane);
    }

    if (ct == nTiles - 1) {  // key tile cf done: aL, y, cL of (a, cf, j, k)
      sm.finalize();
      float inv[2];
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) inv[hh] = sm.l[hh] > 0.f ? 1.f / sm.l[hh] : 0.f;
      const int64_t colK0 = (pair0 + cf) * b2 * p.b1 + kr;  // aL / cL / y row (j = 0, k)
      T* aLrow = static_cast<T*>(p.aL) + (colK0 + int64_t(wj0) * p.b1) * D;
      const int64_t rowStride = int64_t(p.b1) * D;
      const int nRows = b2 - wj0;  // rows r < nRows of this warp are real columns j
      store_rows<D, T>(accK, inv, lane, [&](int r) -> T* { return r < nRows ? aLrow + r * rowStride : nullptr; });
      if constexpr (kLast) {
        T* yrow = static_cast<T*>(p.y) + (colK0 + int64_t(wj0) * p.b1) * D;
        store_rows<D, T>(accV, inv, lane, [&](int r) -> T* { return r < nRows ? yrow + r * rowStride : nullptr; });
      }
      if (qd == 0) {
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          const int j = wj0 + g + 8 * hh;
          if (j < b2) p.cL[colK0 + int64_t(j) * p.b1] = sm.l[hh] <= 0.f ? INFINITY : sm.neg_entropy(hh);
        }
      }
    }
    if (++ct == nTiles) ct = 0, ++cf;
  }
  cp_async_wait<0>();  // only empty groups can be pending here
}

template <typename T, int D, bool kLast>
Status launch_r_step_persist(const MonarchParams& p, cudaStream_t s) {
  auto kernel = r_step_persist_kernel<T, D, kLast>;
  const size_t smem = r_persist_smem_bytes<D, T, kLast>();
  Status st = prepare_smem(kernel, smem, "r_step_persist_kernel");
  if (!st.ok) return st;
  const int64_t problems = int64_t(p.B) * p.H * p.Aq * p.b1;
  const int64_t qBlocks = (p.b2 + kBM - 1) / kBM;
  if (problems > 0x7fffffff || qBlocks > 65535)
    return Status::Error("r_step_persist_kernel: problem too large for one launch (B·H·Aq·b1 = " +
                         std::to_string(problems) + ")");
  dim3 grid(static_cast<unsigned>(problems), static_cast<unsigned>(qBlocks));
  kernel<<<grid, kThreads, smem, s>>>(p);
  return launch_status("r_step_persist_kernel");
}

}  // namespace
}  // namespace cuda
}  // namespace monarch
