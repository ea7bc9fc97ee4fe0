// l_step_final_ring_kernel.cuh — the final L-step o = Σ_c softmax_c(u)·y: FlashAttention over the Fk·b1
// candidates of a column with a per-candidate bias −cL, candidates streamed through a cp.async ring.
#pragma once

#include "l_step_config.cuh"

namespace monarch {
namespace cuda {
namespace {  // this header is included by l_step.cu only

// ---------------------------------------------------------------------------------------------
// Final L-step, sized by b1 and pipelined (l_step_final_ring_kernel). One CTA of WARPS warps (16·WARPS
// query rows i, WARPS = ceil(b1/16) up to 4, so b1 = 30 runs 2 warps instead of 4 with 2 idle) per
// (b, h, a, j, block of 16·WARPS queries); 8 warps for D = 64 and b1 in (64, 128]. Candidates stream in tiles of kRingBN = 32 through a
// kRingStages-deep cp.async ring: aL, y and the biases cL (4-byte cp.async; the earlier 64-row kernel's
// synchronous cL load stalled every tile on a global-memory round trip) of up to 3 tiles are in flight
// while one is computed.
constexpr int kRingBN = 32;
constexpr int kRingStages = 4;

template <int D, typename T, int WARPS>
constexpr size_t l_final_ring_smem_bytes() {
  return size_t(16 * WARPS + 2 * kRingStages * kRingBN) * Smem<D>::kLd * sizeof(T) +
         size_t(kRingStages) * kRingBN * sizeof(float);
}

// Issue the loads of candidate tile [c0, c0 + kRingBN): aL and y rows, and the cL biases. Rows past
// nCand are zero-filled (their bias is replaced by +INF where it is used).
template <typename T, int D, int NT>
__device__ __forceinline__ void l_final_issue(T* sK, T* sY, float* sBias, const MonarchParams& p,
                                              const Column& col, int c0) {
  constexpr int LD = Smem<D>::kLd;
  constexpr int kChunksPerRow = D / 8;
  constexpr int kChunks = kRingBN * kChunksPerRow;
  constexpr int kIters = (kChunks + NT - 1) / NT;
  const T* aLg = static_cast<const T*>(p.aL);
  const T* yg = static_cast<const T*>(p.y);
#pragma unroll
  for (int it = 0; it < kIters; ++it) {
    const int c = it * NT + static_cast<int>(threadIdx.x);
    if (kChunks % NT != 0 && c >= kChunks) break;
    const int r = c / kChunksPerRow, cc = (c % kChunksPerRow) * 8;
    const bool ok = c0 + r < col.nCand;
    const int64_t row = ok ? cand_index(p, col, c0 + r) : col.candBase;  // candBase: a valid row
    cp_async16(sK + r * LD + cc, aLg + row * D + cc, ok);
    cp_async16(sY + r * LD + cc, yg + row * D + cc, ok);
  }
  if (threadIdx.x < kRingBN) {
    const int r = threadIdx.x;
    const bool ok = c0 + r < col.nCand;
    const int64_t row = ok ? cand_index(p, col, c0 + r) : col.candBase;
    cp_async4(sBias + r, p.cL + row, ok);
  }
}

template <typename T, int D, int WARPS>
__global__ void __launch_bounds__(32 * WARPS, 2) l_step_final_ring_kernel(MonarchParams p) {
  static_assert(D == 64 || D == 128,
                "l_step_final_ring_kernel: head dim 64 or 128 (mma fragments of 16, 16-byte rows)");
  static_assert((WARPS >= 1 && WARPS <= 4) || (WARPS == 8 && D == 64),
                "l_step_final_ring_kernel: 1..4 warps (query blocks of 16·WARPS rows), or 8 for D = 64");
  constexpr int LD = Smem<D>::kLd;
  constexpr int BM = 16 * WARPS, NT = 32 * WARPS, BN = kRingBN, NS = kRingStages;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);                       // [BM][LD]  queries i
  T* sK = sQ + BM * LD;                                         // [NS][BN][LD]  aL candidates
  T* sY = sK + NS * BN * LD;                                    // [NS][BN][LD]  y values
  float* sBias = reinterpret_cast<float*>(sY + NS * BN * LD);   // [NS][BN]  cL (natural units)

  const Column col = column_of(p, blockIdx.x);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int qd = lane % 4;
  const int i0 = blockIdx.y * BM;

  const T* qg = static_cast<const T*>(p.q.data) + col.b * p.q.sB + col.h * p.q.sH + col.qTok0 * p.q.sS;
  const int64_t qStride = int64_t(p.b2) * p.q.sS;
  const int nTiles = (col.nCand + BN - 1) / BN;  // >= 1 (nCand >= b1 >= 1)

  load_rows_async<BM, D, NT>(sQ, qg + int64_t(i0) * qStride, qStride, p.b1 - i0);
#pragma unroll
  for (int s = 0; s < NS - 1; ++s) {
    if (s < nTiles) l_final_issue<T, D, NT>(sK + s * BN * LD, sY + s * BN * LD, sBias + s * BN, p, col, s * BN);
    cp_async_commit();
  }

  uint32_t qa[D / 16][4];
  float O[D / 8][4];
  zero_acc<D>(O);
  OnlineSoftmax<BN, false> sm;
  sm.init();
  const float scale2 = p.scale * kLog2e;

  for (int t = 0; t < nTiles; ++t) {
    cp_async_wait<NS - 2>();
    __syncthreads();
    if (t + NS - 1 < nTiles) {
      const int sn = (t + NS - 1) % NS;
      l_final_issue<T, D, NT>(sK + sn * BN * LD, sY + sn * BN * LD, sBias + sn * BN, p, col, (t + NS - 1) * BN);
    }
    cp_async_commit();
    if (t == 0) load_a_frags<D>(qa, sQ + warp * 16 * LD, lane);

    const int s = t % NS;
    float S[BN / 8][4];
    warp_gemm_abt<D, BN, T>(S, qa, sK + s * BN * LD, lane);
    float mn[2];  // smallest raw score per row: a visible −Inf logit (l_step_config.cuh)
    biased_logits<BN>(S, mn, scale2, qd,
                      [&](int r) { return t * BN + r < col.nCand ? sBias[s * BN + r] * kLog2e : INFINITY; });
    float alpha[2];
    sm.update(S, alpha);
    sm.poison_neg_inf(S, mn, scale2);
    rescale_rows<D>(O, alpha);
    uint32_t pa[BN / 16][4];
    c_to_a_frags<BN, T>(pa, S);
    warp_gemm_ab<D, BN, T>(O, pa, sY + s * BN * LD, lane);
  }
  cp_async_wait<0>();

  sm.finalize();
  float inv[2];
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) inv[hh] = sm.l[hh] > 0.f ? 1.f / sm.l[hh] : 0.f;
  T* og = static_cast<T*>(p.o.data) + col.b * p.o.sB + col.h * p.o.sH + col.qTok0 * p.o.sS;
  const int64_t oStride = int64_t(p.b2) * p.o.sS;
  const int wi0 = i0 + warp * 16;
  T* orow = og + int64_t(wi0) * oStride;
  const int nRows = p.b1 - wi0;
  store_rows<D, T>(O, inv, lane, [&](int r) -> T* { return r < nRows ? orow + r * oStride : nullptr; });
}

template <typename T, int D, int WARPS>
Status launch_l_final_ring(const MonarchParams& p, int64_t columns, cudaStream_t s) {
  auto kernel = l_step_final_ring_kernel<T, D, WARPS>;
  const size_t smem = l_final_ring_smem_bytes<D, T, WARPS>();
  Status st = prepare_smem(kernel, smem, "l_step_final_ring_kernel");
  if (!st.ok) return st;
  const int64_t qBlocks = (p.b1 + 16 * WARPS - 1) / (16 * WARPS);
  if (qBlocks > 65535) return Status::Error("l_step_final_ring_kernel: b1 too large");
  kernel<<<dim3(unsigned(columns), unsigned(qBlocks)), 32 * WARPS, smem, s>>>(p);
  return launch_status("l_step_final_ring_kernel");
}

}  // namespace
}  // namespace cuda
}  // namespace monarch
