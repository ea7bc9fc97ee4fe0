// rl_final_cluster_kernel.cuh — the last R-step and the final L-step of a one-tile problem (Aq = Fk = 1:
// MonarchAttention's sequences) in one kernel: a thread-block cluster per (b, h) keeps aL, y and cL in
// distributed shared memory, so they never reach global memory (final_step.cu describes the stage).
//
// The R-step of key row k is a b2 × b2 attention (queries j, keys l of row k) whose outputs aL[j, k],
// y[j, k], cL[j, k] are the candidates k of the L-step of column j; so the transposition between the two
// steps is a scatter from the CTA that computed key row k to the CTA that owns column j:
//   cluster of C CTAs, CTA r owns key rows [r·RW, r·RW + RW) and columns [r·JW, r·JW + JW) (RW = ⌈b1/C⌉,
//   JW = ⌈b2/C⌉ ≤ 8);
//   phase 1 (R): per pair of its key rows (warps 0-3: the first, 4-7: the second; a warp takes 16 query
//     columns j), K and V rows double-buffered by cp.async, queries (q, or aR on a later step) loaded
//     straight into mma fragments, S = q·Kᵀ, the one-pass softmax with entropy, aL = P·K and y = P·V;
//     each row j's results go, rounded to the storage dtype as the workspace would hold them, into the
//     shared memory of the CTA owning column j (st to a cluster-mapped address);
//   cluster barrier (release / acquire: every scatter is visible);
//   phase 2 (L): per (owned column, 16 queries i) the final L-step over the column's b1 candidates from
//     its own shared memory: S = q·aLᵀ·s − cL, softmax with the L-steps' non-finite rule, o = P·y.
// Semantics are the two stages' (r_step.cu, l_step.cu): a key row with no valid key gives aL = y = 0 and
// cL = +INF, a visible non-finite logit poisons its row. Candidate rows past b1 are zeros with bias +INF.
// Head dim 64 only: at 128 the received aL and y of 8 columns × 64 candidates would not fit.
#pragma once

#include <cooperative_groups.h>

#include "../common/launch_utils.cuh"
#include "../r_step/r_step_config.cuh"

namespace monarch {
namespace cuda {
namespace {  // this header is included by final_step.cu only

namespace cg = cooperative_groups;

constexpr int kFusedWarps = 8;
constexpr int kFusedThreads = 32 * kFusedWarps;
constexpr int kFusedMaxCluster = 8;  // the portable cluster size on sm_90
constexpr int kFusedMaxCols = 8;     // columns per CTA (JW): 8 × 64 candidates of aL and y at d 64

// The cluster shape of a problem: C CTAs, RW key rows and JW columns each.
struct FusedShape {
  int C, RW, JW;
};
inline FusedShape fused_shape(int b1, int b2) {
  const int mx = b1 > b2 ? b1 : b2;
  int C = (mx + kFusedMaxCols - 1) / kFusedMaxCols;
  if (C > kFusedMaxCluster) C = kFusedMaxCluster;
  if (C < 1) C = 1;
  return {C, (b1 + C - 1) / C, (b2 + C - 1) / C};
}

// Shared memory (elements of T unless noted), NR = 16·NB rows per block:
//   recvA, recvY [JW][NR][LD]  received aL and y of the owned columns (candidate rows k)
//   recvC        [JW][NR] fp32 received cL
//   kv           [2 buffers][2 rows][K, V][NR][LD]  phase-1 key rows
template <int D, typename T, int NB>
struct FusedSmem {
  static constexpr int LD = Smem<D>::kLd, NR = 16 * NB;
  static constexpr size_t kRecv = size_t(kFusedMaxCols) * NR * LD;  // elements of one of recvA / recvY
  static constexpr size_t kKv = size_t(NR) * LD;                      // elements of one K or V row block
  static constexpr size_t bytes() {
    return (2 * kRecv + 8 * kKv) * sizeof(T) + size_t(kFusedMaxCols) * NR * sizeof(float);
  }
};

// A fragments (mma.m16n8k16 layout, see mma_utils.cuh) of 16 rows × D read straight from global memory:
// row r < nRows at base + r·stride, rows past nRows zero. 4-byte loads (two elements).
template <int D, typename T>
__device__ __forceinline__ void load_a_frags_global(uint32_t (&a)[D / 16][4], const T* base, int64_t stride,
                                                    int nRows, int lane) {
  const int g = lane / 4, qd = lane % 4;
  const T* r0 = base + int64_t(g) * stride + 2 * qd;
  const T* r1 = base + int64_t(g + 8) * stride + 2 * qd;
  const bool ok0 = g < nRows, ok1 = g + 8 < nRows;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    a[kk][0] = ok0 ? *reinterpret_cast<const uint32_t*>(r0 + kk * 16) : 0u;
    a[kk][1] = ok1 ? *reinterpret_cast<const uint32_t*>(r1 + kk * 16) : 0u;
    a[kk][2] = ok0 ? *reinterpret_cast<const uint32_t*>(r0 + kk * 16 + 8) : 0u;
    a[kk][3] = ok1 ? *reinterpret_cast<const uint32_t*>(r1 + kk * 16 + 8) : 0u;
  }
}

template <typename T, int D, bool kFirst, int NB>
__global__ void __launch_bounds__(kFusedThreads, 1) rl_final_cluster_kernel(MonarchParams p, FusedShape sh) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using Sm = FusedSmem<D, T, NB>;
  constexpr int LD = Sm::LD, NR = Sm::NR;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* recvA = reinterpret_cast<T*>(smem_raw);
  T* recvY = recvA + Sm::kRecv;
  T* kvBuf = recvY + Sm::kRecv;  // [2][2][2][NR][LD]
  float* recvC = reinterpret_cast<float*>(kvBuf + 8 * Sm::kKv);

  cg::cluster_group cluster = cg::this_cluster();
  const int rank = int(cluster.block_rank());
  const int64_t item = blockIdx.x / sh.C;  // (b, h)
  const int h = int(item % p.H), b = int(item / p.H);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, qd = lane % 4;
  const int b1 = p.b1, b2 = p.b2;

  // Candidate rows past b1 of the owned columns are zeros (a 0 · garbage product could be NaN).
  for (int i = threadIdx.x; i < kFusedMaxCols * (NR - b1) * (D / 8); i += kFusedThreads) {
    const int c = i / ((NR - b1) * (D / 8)), rem = i % ((NR - b1) * (D / 8));
    const int r = b1 + rem / (D / 8), d = (rem % (D / 8)) * 8;
    *reinterpret_cast<uint4*>(recvA + (c * NR + r) * LD + d) = make_uint4(0, 0, 0, 0);
    *reinterpret_cast<uint4*>(recvY + (c * NR + r) * LD + d) = make_uint4(0, 0, 0, 0);
  }
  cluster.sync();  // every CTA of the cluster runs before anyone writes into its shared memory

  // ---- phase 1: the R-step of this CTA's key rows ------------------------------------------------
  const int kBeg = rank * sh.RW;
  const int kEnd = min(b1, kBeg + sh.RW);
  const int nIt = kEnd > kBeg ? (kEnd - kBeg + 1) / 2 : 0;
  const T* kg = static_cast<const T*>(p.k.data) + b * p.k.sB + h * p.k.sH;
  const T* vg = static_cast<const T*>(p.v.data) + b * p.v.sB + h * p.v.sH;
  const int64_t pair0 = (int64_t(b) * p.H + h) * p.Aq * p.Fk;  // pair of (b, h, a = 0, f = 0)
  const int half = warp / 4, jt = warp % 4;
  const int wj0 = jt * 16;

  auto issue = [&](int it) {
    T* buf = kvBuf + (it & 1) * 4 * Sm::kKv;
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const int k = kBeg + 2 * it + rr;
      if (k >= kEnd) break;
      const int64_t tok = int64_t(k) * b2;
      load_rows_async<NR, D, kFusedThreads>(buf + (2 * rr) * Sm::kKv, kg + tok * p.k.sS, p.k.sS, b2);
      load_rows_async<NR, D, kFusedThreads>(buf + (2 * rr + 1) * Sm::kKv, vg + tok * p.v.sS, p.v.sS, b2);
    }
    cp_async_commit();
  };
  if (nIt > 0) issue(0);
  for (int it = 0; it < nIt; ++it) {
    const int k = kBeg + 2 * it + half;
    const bool active = k < kEnd && wj0 < b2;  // warp-uniform
    uint32_t qa[D / 16][4];
    const int64_t rowJ0 = (pair0 * b1 + k) * b2;  // later steps: aR / cR row (k, j = 0)
    if (active) {
      if constexpr (kFirst) {
        const T* q0 = static_cast<const T*>(p.q.data) + b * p.q.sB + h * p.q.sH + (int64_t(k) * b2 + wj0) * p.q.sS;
        load_a_frags_global<D, T>(qa, q0, p.q.sS, b2 - wj0, lane);
      } else {
        load_a_frags_global<D, T>(qa, static_cast<const T*>(p.aR) + (rowJ0 + wj0) * D, D, b2 - wj0, lane);
      }
    }
    cp_async_wait<0>();
    __syncthreads();  // key rows of `it` landed for every thread; everyone is done with it - 1's buffer
    if (it + 1 < nIt) issue(it + 1);
    if (!active) continue;

    const T* sK = kvBuf + (it & 1) * 4 * Sm::kKv + (2 * half) * Sm::kKv;
    const T* sV = sK + Sm::kKv;
    float scale2[2];
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      float invT = 1.f;
      if constexpr (!kFirst) {
        const int j = wj0 + g + 8 * hh;
        invT = j < b2 ? r_inv_temp(p.cR[rowJ0 + j], p.maxInvTemp) : 1.f;
      }
      scale2[hh] = p.scale * kLog2e * invT;
    }
    const uint8_t* kvRow = p.keyValid ? p.keyValid + int64_t(b) * b1 * b2 + int64_t(k) * b2 : nullptr;
    float S[NR / 8][4];
    warp_gemm_abt<D, NR, T>(S, qa, sK, lane);
    scale_mask_logits<NR>(S, 0, b2, kvRow, scale2, qd);
    OnlineSoftmax<NR, true> sm;
    sm.first(S);
    uint32_t pa[NB][4];
    c_to_a_frags<NR, T>(pa, S);
    sm.finalize();
    float acc[D / 8][4], accV[D / 8][4];
    zero_acc<D>(acc);
    zero_acc<D>(accV);
    warp_gemm_ab2<D, NR, T>(acc, accV, pa, sK, sV, lane);  // aL = P·K, y = P·V
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int j = wj0 + g + 8 * hh;
      if (j >= b2) continue;
      const int owner = j / sh.JW, jl = j - owner * sh.JW;
      const float inv = sm.l[hh] > 0.f ? 1.f / sm.l[hh] : 0.f;
      T* dA = cluster.map_shared_rank(recvA, owner) + (jl * NR + k) * LD + 2 * qd;
      T* dY = cluster.map_shared_rank(recvY, owner) + (jl * NR + k) * LD + 2 * qd;
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        *reinterpret_cast<uint32_t*>(dA + n * 8) = pack2<T>(acc[n][2 * hh] * inv, acc[n][2 * hh + 1] * inv);
        *reinterpret_cast<uint32_t*>(dY + n * 8) = pack2<T>(accV[n][2 * hh] * inv, accV[n][2 * hh + 1] * inv);
      }
      if (qd == 0)
        *(cluster.map_shared_rank(recvC, owner) + jl * NR + k) = sm.l[hh] <= 0.f ? INFINITY : sm.neg_entropy(hh);
    }
  }
  cp_async_wait<0>();
  cluster.sync();  // every scatter of the cluster is visible (barrier.cluster arrive.release / wait.acquire)

  // ---- phase 2: the final L-step of this CTA's columns -------------------------------------------
  const int jBeg = rank * sh.JW;
  const int nCols = max(0, min(b2, jBeg + sh.JW) - jBeg);
  const int nQt = (b1 + 15) / 16;
  const T* qg = static_cast<const T*>(p.q.data) + b * p.q.sB + h * p.q.sH;
  T* og = static_cast<T*>(p.o.data) + b * p.o.sB + h * p.o.sH;
  const int64_t qStride = int64_t(b2) * p.q.sS, oStride = int64_t(b2) * p.o.sS;
  const float scale2 = p.scale * kLog2e;
  for (int u = warp; u < nCols * nQt; u += kFusedWarps) {
    const int jl = u / nQt, i0 = (u % nQt) * 16;
    const int j = jBeg + jl;
    uint32_t qa[D / 16][4];
    load_a_frags_global<D, T>(qa, qg + (int64_t(i0) * b2 + j) * p.q.sS, qStride, b1 - i0, lane);
    const T* sA = recvA + jl * NR * LD;
    const float* sC = recvC + jl * NR;
    float S[NR / 8][4];
    warp_gemm_abt<D, NR, T>(S, qa, sA, lane);
    float mn[2];  // smallest raw score per row: a visible −Inf logit (l_step_config.cuh)
    biased_logits<NR>(S, mn, scale2, qd, [&](int r) { return r < b1 ? sC[r] * kLog2e : INFINITY; });
    OnlineSoftmax<NR, false> sm;
    sm.init();
    float alpha[2];  // unused: nothing accumulated before this single update
    sm.update(S, alpha);
    sm.poison_neg_inf(S, mn, scale2);
    uint32_t pa[NB][4];
    c_to_a_frags<NR, T>(pa, S);
    float O[D / 8][4];
    zero_acc<D>(O);
    warp_gemm_ab<D, NR, T>(O, pa, recvY + jl * NR * LD, lane);
    sm.finalize();
    float inv[2];
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) inv[hh] = sm.l[hh] > 0.f ? 1.f / sm.l[hh] : 0.f;
    T* orow = og + (int64_t(i0) * b2 + j) * p.o.sS;
    const int nRows = b1 - i0;
    store_rows<D, T>(O, inv, lane, [&](int r) -> T* { return r < nRows ? orow + r * oStride : nullptr; });
  }
#endif
}

// The launch configuration of `ctas` CTAs in clusters of `c` (1-D), kFusedThreads each.
struct ClusterLaunch {
  cudaLaunchConfig_t cfg = {};
  cudaLaunchAttribute attr[1];
  ClusterLaunch(int64_t ctas, int c, size_t smem, cudaStream_t s) {
    cfg.gridDim = dim3(unsigned(ctas));
    cfg.blockDim = dim3(kFusedThreads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = unsigned(c);
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
  }
  ClusterLaunch(const ClusterLaunch&) = delete;  // cfg.attrs points into this object
  ClusterLaunch& operator=(const ClusterLaunch&) = delete;
};

// Whether this build runs the kernel on the current device (sm_90 or newer code in the fatbin for it:
// an older binary, e.g. sm_80 code run on a 9.0 device, has an empty body) and a cluster of its size fits.
template <typename T, int D, bool kFirst, int NB>
bool rl_final_cluster_runs(const FusedShape& sh) {
  auto kernel = rl_final_cluster_kernel<T, D, kFirst, NB>;
  cudaFuncAttributes fa{};
  if (cudaFuncGetAttributes(&fa, kernel) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  if (fa.binaryVersion < 90) return false;
  const size_t smem = FusedSmem<D, T, NB>::bytes();
  if (!prepare_smem(kernel, smem, "rl_final_cluster_kernel").ok) {
    (void)cudaGetLastError();
    return false;
  }
  ClusterLaunch cl(sh.C, sh.C, smem, nullptr);
  int clusters = 0;
  if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &cl.cfg) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return clusters > 0;
}

template <typename T, int D, bool kFirst, int NB>
Status launch_rl_final_cluster(const MonarchParams& p, const FusedShape& sh, cudaStream_t s) {
  auto kernel = rl_final_cluster_kernel<T, D, kFirst, NB>;
  const size_t smem = FusedSmem<D, T, NB>::bytes();
  Status st = prepare_smem(kernel, smem, "rl_final_cluster_kernel");
  if (!st.ok) return st;
  const int64_t ctas = int64_t(p.B) * p.H * sh.C;
  if (ctas > 0x7fffffff) return Status::Error("rl_final_cluster_kernel: B·H too large for one launch");
  ClusterLaunch cl(ctas, sh.C, smem, s);
  const cudaError_t e = cudaLaunchKernelEx(&cl.cfg, kernel, p, sh);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return Status::Error(std::string("rl_final_cluster_kernel: ") + cudaGetErrorString(e));
  }
  return launch_status("rl_final_cluster_kernel");
}

}  // namespace
}  // namespace cuda
}  // namespace monarch
