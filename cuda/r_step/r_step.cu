// r_step.cu — the Monarch R-step (docs/ALGORITHMS.md §A.2, §B.3) with the online entropy of §C.3.
//
// For every (b, h, allowed pair (a, f), key row k) the R-step is one small attention:
//   queries  aR[a,f,k,j], j ∈ [b2]   (first step: q[a,k,j] with cR = 1, i.e. L = I)
//   keys     k[f,k,l],    l ∈ [b2]   (masked by keyValid), per-query temperature invT = min(1/cR, max)
//   values   [k[f,k,l] | v[f,k,l]]   (v only on the last step, for y)
//   outputs  aL[a,f,j,k] = Σ_l R·k  (unscaled),  y[a,f,j,k] = Σ_l R·v,  cL[a,f,j,k] = Σ_l R log R
// A row with no valid key writes aL = y = 0 and cL = +INF (L logit −∞, the §A.4 fix).
//
// Kernels (the key tile is also the first value matrix, aL = P·K, so a tile costs one K and one V load
// and three mma products S, aL, y):
//   first step (q does not depend on f, so a CTA loops over the key tiles f with its queries loaded once):
//     r_step_rowwise_kernel  b2 <= 128 (<= 80 for D = 128 with y): whole key row per f, see below;
//     r_step_persist_kernel  otherwise: key subtiles streamed through a 4-stage ring, online softmax.
//   later steps (aR, cR depend on f): one CTA per (b, h, a, f, k, column block):
//     r_step_rowwise_kernel<kFirst = false> where the key row fits (as above), one f-block;
//     r_step_kernel otherwise: 4 warps × 16 query columns j, keys in tiles of kBN through double-
//     buffered shared memory with an online softmax.
#include "../common/fp32_stages.h"
#include <monarch/monarch_cuda.h>
#include "../common/online_softmax.cuh"
#include "../common/rl_pipeline.cuh"

namespace monarch {
namespace cuda {
namespace {

using namespace detail;

constexpr int kBM = 64;  // query columns j per CTA: 4 warps × 16
// Keys l per tile: 64, or 32 when two D = 128 accumulators (aL and y: 128 fp32 registers) are live,
// where a 64-key tile's S and P fragments push the kernel past 255 registers into spills.
template <int D, bool kLast>
constexpr int r_step_bn() {
  return (D == 128 && kLast) ? 32 : 64;
}
constexpr int kThreads = 128;

// S (this warp's 16 query rows × NK keys l0 + [0, NK) of one key row, C-fragment layout) becomes
// base-2 logits: row half h = e / 2 scaled by scale2[h] (s·log2(e)·invT); keys l >= b2 or masked out by
// kv (that key row's keyValid, or null) get −INF.
template <int NK>
__device__ __forceinline__ void scale_mask_logits(float (&S)[NK / 8][4], int l0, int b2, const uint8_t* kv,
                                                  const float (&scale2)[2], int qd) {
#pragma unroll
  for (int n = 0; n < NK / 8; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int l = l0 + n * 8 + 2 * qd + (e & 1);
      const bool ok = l < b2 && (kv == nullptr || kv[l] != 0);
      S[n][e] = ok ? S[n][e] * scale2[e >> 1] : -INFINITY;
    }
  }
}

template <int D, typename T, bool kLast>
constexpr size_t r_step_smem_bytes() {
  return size_t(kBM + 4 * r_step_bn<D, kLast>()) * Smem<D>::kLd * sizeof(T);
}

template <typename T, int D, bool kFirst, bool kLast>
__global__ void __launch_bounds__(kThreads, 2) r_step_kernel(MonarchParams p) {
  constexpr int LD = Smem<D>::kLd;
  constexpr int kBN = r_step_bn<D, kLast>();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // [kBM][LD]  queries aR (j)
  T* sK = sQ + kBM * LD;                   // [2][kBN][LD]  keys k (l), also values for aL
  T* sV = sK + 2 * kBN * LD;               // [2][kBN][LD]  values v (l), last step only

  int64_t pid = blockIdx.x;
  const int kr = int(pid % p.b1);  pid /= p.b1;
  const int f = int(pid % p.Fk);   pid /= p.Fk;
  const int a = int(pid % p.Aq);   pid /= p.Aq;
  const int h = int(pid % p.H);
  const int b = int(pid / p.H);
  if (!pair_allowed(p, a, f)) return;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, qd = lane % 4;
  const int j0 = blockIdx.y * kBM;
  const int b2 = p.b2;
  const int64_t pair = ((int64_t(b) * p.H + h) * p.Aq + a) * p.Fk + f;  // (b, h, a, f)
  const int64_t rowJ0 = (pair * p.b1 + kr) * b2;                        // aR / cR row (k, j = 0)
  const int64_t colK0 = pair * b2 * p.b1 + kr;                          // aL / cL / y row (j = 0, k)

  const T* qrow0 = kFirst ? static_cast<const T*>(p.q.data) + b * p.q.sB + h * p.q.sH +
                                (int64_t(a) * p.b1 + kr) * b2 * p.q.sS
                          : static_cast<const T*>(p.aR) + rowJ0 * D;
  const int64_t qStride = kFirst ? p.q.sS : D;
  const int64_t keyTok0 = (int64_t(f) * p.b1 + kr) * b2;  // token of key l = 0
  const T* kg = static_cast<const T*>(p.k.data) + b * p.k.sB + h * p.k.sH + keyTok0 * p.k.sS;
  const T* vg = static_cast<const T*>(p.v.data) + b * p.v.sB + h * p.v.sH + keyTok0 * p.v.sS;
  const uint8_t* kv = p.keyValid ? p.keyValid + int64_t(b) * p.Fk * p.b1 * b2 + keyTok0 : nullptr;

  const int nTiles = (b2 + kBN - 1) / kBN;
  auto load_kv = [&](int t, int buf) {
    const int base = t * kBN;
    load_tile_async<kBN, D, kThreads>(sK + buf * kBN * LD, kg, [&](int r) -> const T* {
      return base + r < b2 ? kg + int64_t(base + r) * p.k.sS : nullptr;
    });
    if constexpr (kLast)
      load_tile_async<kBN, D, kThreads>(sV + buf * kBN * LD, vg, [&](int r) -> const T* {
        return base + r < b2 ? vg + int64_t(base + r) * p.v.sS : nullptr;
      });
  };
  load_tile_async<kBM, D, kThreads>(sQ, qrow0, [&](int r) -> const T* {
    return j0 + r < b2 ? qrow0 + int64_t(j0 + r) * qStride : nullptr;
  });
  load_kv(0, 0);
  cp_async_commit();

  // Per-row logit scale in base 2: s·invT·log2(e).
  float scale2[2];
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    float invT = 1.f;
    const int j = j0 + warp * 16 + g + 8 * hh;
    if (!kFirst && j < b2) {
      const float c = p.cR[rowJ0 + j];
      invT = c > 0.f ? fminf(1.f / c, p.maxInvTemp) : p.maxInvTemp;
    }
    scale2[hh] = p.scale * invT * kLog2e;
  }

  float accK[D / 8][4];
  float accV[D / 8][4];  // dead (eliminated) unless kLast
  zero_acc<D>(accK);
  if constexpr (kLast) zero_acc<D>(accV);
  OnlineSoftmax<kBN, true> sm;
  sm.init();

  for (int t = 0; t < nTiles; ++t) {
    const int buf = t & 1;
    if (t + 1 < nTiles) {
      load_kv(t + 1, buf ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    float S[kBN / 8][4];
    warp_gemm_abt_smem<D, kBN, T>(S, sQ + warp * 16 * LD, sK + buf * kBN * LD, lane);
    scale_mask_logits<kBN>(S, t * kBN, b2, kv, scale2, qd);
    float alpha[2];
    sm.update(S, alpha);
    rescale_rows<D>(accK, alpha);
    uint32_t pa[kBN / 16][4];
    c_to_a_frags<kBN, T>(pa, S);
    warp_gemm_ab<D, kBN, T>(accK, pa, sK + buf * kBN * LD, lane);
    if constexpr (kLast) {
      rescale_rows<D>(accV, alpha);
      warp_gemm_ab<D, kBN, T>(accV, pa, sV + buf * kBN * LD, lane);
    }
    __syncthreads();
  }

  sm.finalize();
  float inv[2];
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) inv[hh] = sm.l[hh] > 0.f ? 1.f / sm.l[hh] : 0.f;
  const int wj0 = j0 + warp * 16;
  auto out_row = [&](void* base, int r) -> T* {
    return wj0 + r < b2 ? static_cast<T*>(base) + (colK0 + int64_t(wj0 + r) * p.b1) * D : nullptr;
  };
  store_rows<D, T>(accK, inv, lane, [&](int r) { return out_row(p.aL, r); });
  if constexpr (kLast) store_rows<D, T>(accV, inv, lane, [&](int r) { return out_row(p.y, r); });
  if (qd == 0) {
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int j = wj0 + g + 8 * hh;
      if (j < b2) p.cL[colK0 + int64_t(j) * p.b1] = sm.l[hh] > 0.f ? sm.neg_entropy(hh) : INFINITY;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// First R-step (L = I: the queries q[a,k,j] do not depend on f), persistent over the key tiles f.
// One CTA of 4 warps per (b, h, a, key row k, block of kBM query columns j) loops over the allowed key
// tiles f ∈ [0, fLim): the query block is loaded once, and the (f, key-subtile) stream of K (and V)
// tiles runs through a kRpStages-deep cp.async ring, so the loads of the next tiles (and the stores of
// the previous f's aL / y) overlap the current tile's products. Per (f, k, j) the arithmetic is exactly
// that of r_step_kernel (same tile size kBN, same operation order), so the results are bit-identical.
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
          if (j < b2) p.cL[colK0 + int64_t(j) * p.b1] = sm.l[hh] > 0.f ? sm.neg_entropy(hh) : INFINITY;
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

// ---------------------------------------------------------------------------------------------
// First R-step for b2 <= 16·NK16 (NK16 <= 8; <= 5 for D = 128 with y): the whole key row of a key tile
// at once. The R-step problem is a b2 × b2 attention (queries j and keys l both range over b2), so a CTA
// is W = NK16 warps (16·W query rows j, no idle warps: b2 = 52 → 4 warps, 80 → 5; NK16 = 6, 8 use 3
// and 4 warps and two column blocks) and a key tile is NK16 blocks of 16 keys. Per (b, h, a, k, column
// block) the CTA loops over the allowed key tiles f with the whole f-block of K (and V) rows double-
// buffered in shared memory (loaded by cp.async while the previous f is computed):
//   S = q·Kᵀ over all NKEY = 16·NK16 keys at once (query fragments held in registers for every f),
//   one-pass softmax with entropy (no running max, no accumulator rescaling), then aL = P·K, stored,
//   then y = P·V in the same 64 accumulator registers. Outputs go out through the warp's 16 query rows
//   of shared memory (free once the query fragments are in registers) as 16-byte coalesced stores.
template <int NK16>
constexpr int rw_warps() {
  return NK16 == 6 ? 3 : NK16 == 8 ? 4 : NK16;
}
// kDual: the aL and y accumulators are both live, so the two P·K / P·V products issue back to back
// (more independent mma chains); not where it would exceed the register budget. kSingle (D = 128 with
// y, b2 in (32, 64], e.g. 480p's 52): one f-block (no prefetch of key tile f + 1) and at most 168
// registers, so three CTAs share an SM and hide each other's load latency: measured 3.10 ms against
// 3.45-3.51 ms for two double-buffered CTAs per SM at 480p (benchmarks/notes/kernel-rl-steps.md).
template <int D, bool kLast, int NK16>
struct RwCfg {
  static constexpr int W = rw_warps<NK16>();
  static constexpr bool kSingle = D == 128 && kLast && NK16 <= 4 && NK16 >= 3;
  static constexpr bool kDual = kLast && !(D == 128 && NK16 == 5) && !kSingle;
  static constexpr int kMinBlocks = W == 1 ? 8 : W == 2 ? 4 : ((D == 64 && W == 4) || kSingle) ? 3 : 2;
};
// Shared memory: the query / staging rows and one or two f-blocks (two: key tile f + 1 loads while f
// is computed; one when there is a single key tile or the config is kSingle).
template <int D, typename T, bool kLast, int NK16>
constexpr size_t r_rowwise_smem_bytes(int blocks) {
  return size_t(16 * rw_warps<NK16>() + blocks * 16 * NK16 * (kLast ? 2 : 1)) * Smem<D>::kLd * sizeof(T);
}

// Issue the cp.async loads of one key tile's NKEY rows of K (then V, last step) into a ring block;
// rows l >= b2 are zero-filled.
template <typename T, int D, int NKEY, int NT, bool kLast>
__device__ __forceinline__ void r_rowwise_issue(T* block, const T* kg, const T* vg, int64_t kS, int64_t vS,
                                                int64_t tok, int b2) {
  load_rows_async<NKEY, D, NT>(block, kg + tok * kS, kS, b2);
  if constexpr (kLast) load_rows_async<NKEY, D, NT>(block + NKEY * Smem<D>::kLd, vg + tok * vS, vS, b2);
}

// kFirst = false (later steps): the queries aR[a,f,k,j] and temperatures 1/cR[a,f,k,j] depend on f, so a
// CTA serves one (b, h, a, f, k, column block) problem: one f-block, queries from aR, per-row invT.
// The R temperature of query column j (docs/ALGORITHMS.md §A.5): 1 on the first step, else min(1/cR, max).
template <bool kFirst>
__device__ __forceinline__ float row_inv_temp(const MonarchParams& p, int64_t rowJ0, int j) {
  if constexpr (kFirst) {
    return 1.f;
  } else {
    if (j >= p.b2) return 1.f;
    const float c = p.cR[rowJ0 + j];
    return c > 0.f ? fminf(1.f / c, p.maxInvTemp) : p.maxInvTemp;
  }
}

template <typename T, int D, bool kFirst, bool kLast, int NK16>
__global__ void __launch_bounds__(32 * rw_warps<NK16>(), (RwCfg<D, kLast, NK16>::kMinBlocks))
    r_step_rowwise_kernel(MonarchParams p, int twoBlocks) {
  constexpr int LD = Smem<D>::kLd;
  constexpr int W = rw_warps<NK16>(), NT = 32 * W, BM = 16 * W, NKEY = 16 * NK16;
  constexpr int kBlockElems = NKEY * (kLast ? 2 : 1) * LD;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // [BM][LD] queries; then warp w's rows are its output staging
  T* sRing = sQ + BM * LD;                 // [1 or 2][NKEY (K) (+ NKEY (V))][LD]
  constexpr bool kDual = RwCfg<D, kLast, NK16>::kDual;

  int64_t pid = blockIdx.x;
  const int kr = int(pid % p.b1);  pid /= p.b1;
  int fBeg = 0;
  if constexpr (!kFirst) {
    fBeg = int(pid % p.Fk);
    pid /= p.Fk;
  }
  const int a = int(pid % p.Aq);   pid /= p.Aq;
  const int h = int(pid % p.H);
  const int b = int(pid / p.H);
  // First step: the allowed prefix of key tiles (>= 1); later steps: the CTA's one tile, if allowed.
  const int fEnd = kFirst ? allowed_key_tiles(p, a) : fBeg + 1;
  if (!kFirst && !pair_allowed(p, a, fBeg)) return;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, qd = lane % 4;
  const int j0 = blockIdx.y * BM;
  const int b2 = p.b2;
  const int64_t pair0 = ((int64_t(b) * p.H + h) * p.Aq + a) * p.Fk;  // pair index of (b, h, a, f = 0)
  const int64_t tileToks = int64_t(p.b1) * b2;                         // tokens per key tile f
  const int64_t kTok0 = int64_t(kr) * b2;                              // token of (f = 0, k, l = 0)
  const int64_t rowJ0 = ((pair0 + fBeg) * p.b1 + kr) * b2;             // later steps: aR / cR row (k, j = 0)

  const T* qrow0 = kFirst ? static_cast<const T*>(p.q.data) + b * p.q.sB + h * p.q.sH +
                                (int64_t(a) * p.b1 + kr) * b2 * p.q.sS
                          : static_cast<const T*>(p.aR) + rowJ0 * D;
  const int64_t qStride = kFirst ? p.q.sS : D;
  const T* kg = static_cast<const T*>(p.k.data) + b * p.k.sB + h * p.k.sH;
  const T* vg = static_cast<const T*>(p.v.data) + b * p.v.sB + h * p.v.sH;
  const uint8_t* kv = p.keyValid ? p.keyValid + int64_t(b) * p.Fk * tileToks + kTok0 : nullptr;

  load_rows_async<BM, D, NT>(sQ, qrow0 + int64_t(j0) * qStride, qStride, b2 - j0);
  r_rowwise_issue<T, D, NKEY, NT, kLast>(sRing, kg, vg, p.k.sS, p.v.sS, fBeg * tileToks + kTok0, b2);
  cp_async_commit();

  // Per-row logit scale in base 2, s·invT·log2(e): invT = 1 on the first step (L = I), else
  // min(1/cR, maxInvTemp) of the row's column j (rows g and g + 8 of this warp's 16).
  const float scale2[2] = {p.scale * kLog2e * row_inv_temp<kFirst>(p, rowJ0, blockIdx.y * BM + warp * 16 + g),
                           p.scale * kLog2e * row_inv_temp<kFirst>(p, rowJ0, blockIdx.y * BM + warp * 16 + g + 8)};
  const int wj0 = j0 + warp * 16;
  const int nRows = b2 - wj0;  // rows r < nRows of this warp are real columns j (warp-uniform)
  T* sStage = sQ + warp * 16 * LD;
  const int64_t rowStride = int64_t(p.b1) * D;
  uint32_t qa[D / 16][4];

  // twoBlocks (uniform): key tile f + 1 is loaded into the other block while f is computed; else
  // into the one block after every warp is done with f.
  for (int f = fBeg; f < fEnd; ++f) {
    cp_async_wait<0>();  // key tile f (and, for the first f, the queries) landed
    __syncthreads();     // ... for every thread; and every warp is done with key tile f - 1's block
    if (twoBlocks && f + 1 < fEnd)
      r_rowwise_issue<T, D, NKEY, NT, kLast>(sRing + ((f + 1) & 1) * kBlockElems, kg, vg, p.k.sS, p.v.sS,
                                              (f + 1) * tileToks + kTok0, b2);
    cp_async_commit();
    if (f == fBeg) load_a_frags<D>(qa, sStage, lane);

    const T* sK = sRing + (twoBlocks ? (f & 1) : 0) * kBlockElems;
    float S[NKEY / 8][4];
    warp_gemm_abt<D, NKEY, T>(S, qa, sK, lane);
    const uint8_t* kvf = kv ? kv + int64_t(f) * tileToks : nullptr;
    scale_mask_logits<NKEY>(S, 0, b2, kvf, scale2, qd);
    OnlineSoftmax<NKEY, true> sm;  // one update from the initial state = a plain two-pass softmax
    sm.init();
    float alpha[2];  // unused: nothing accumulated before this single update
    sm.update(S, alpha);
    uint32_t pa[NK16][4];
    c_to_a_frags<NKEY, T>(pa, S);
    sm.finalize();
    float inv[2];
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) inv[hh] = sm.l[hh] > 0.f ? 1.f / sm.l[hh] : 0.f;

    const int64_t colK0 = (pair0 + f) * b2 * p.b1 + kr;  // aL / cL / y row (j = 0, k)
    const int64_t row0 = (colK0 + int64_t(wj0) * p.b1) * D;
    float acc[D / 8][4];
    zero_acc<D>(acc);
    if constexpr (kDual) {
      float accV[D / 8][4];
      zero_acc<D>(accV);
      warp_gemm_ab2<D, NKEY, T>(acc, accV, pa, sK, sK + NKEY * LD, lane);  // aL = P·K, y = P·V
      if (nRows > 0) {
        store_rows_staged<D, T>(acc, inv, lane, sStage, static_cast<T*>(p.aL) + row0, rowStride, nRows);
        store_rows_staged<D, T>(accV, inv, lane, sStage, static_cast<T*>(p.y) + row0, rowStride, nRows);
      }
    } else {
      warp_gemm_ab<D, NKEY, T>(acc, pa, sK, lane);  // aL = P·K
      if (nRows > 0) store_rows_staged<D, T>(acc, inv, lane, sStage, static_cast<T*>(p.aL) + row0, rowStride, nRows);
      if constexpr (kLast) {
        zero_acc<D>(acc);
        warp_gemm_ab<D, NKEY, T>(acc, pa, sK + NKEY * LD, lane);  // y = P·V
        if (nRows > 0) store_rows_staged<D, T>(acc, inv, lane, sStage, static_cast<T*>(p.y) + row0, rowStride, nRows);
      }
    }
    if (qd == 0) {
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int j = wj0 + g + 8 * hh;
        if (j < b2) p.cL[colK0 + int64_t(j) * p.b1] = sm.l[hh] > 0.f ? sm.neg_entropy(hh) : INFINITY;
      }
    }
    if (!twoBlocks && f + 1 < fEnd) {
      __syncthreads();  // every warp is done with the block
      r_rowwise_issue<T, D, NKEY, NT, kLast>(sRing, kg, vg, p.k.sS, p.v.sS, (f + 1) * tileToks + kTok0, b2);
      cp_async_commit();
    }
  }
  cp_async_wait<0>();  // only an empty group can be pending here
}

template <typename T, int D, bool kFirst, bool kLast, int NK16>
Status launch_r_step_rowwise(const MonarchParams& p, cudaStream_t s) {
  auto kernel = r_step_rowwise_kernel<T, D, kFirst, kLast, NK16>;
  const int twoBlocks = kFirst && p.Fk > 1 && !RwCfg<D, kLast, NK16>::kSingle;
  const size_t smem = r_rowwise_smem_bytes<D, T, kLast, NK16>(twoBlocks ? 2 : 1);
  Status st = prepare_smem(kernel, smem, "r_step_rowwise_kernel");
  if (!st.ok) return st;
  constexpr int BM = 16 * rw_warps<NK16>();
  const int64_t problems = int64_t(p.B) * p.H * p.Aq * p.b1 * (kFirst ? 1 : p.Fk);
  const int64_t qBlocks = (p.b2 + BM - 1) / BM;
  if (problems > 0x7fffffff)
    return Status::Error("r_step_rowwise_kernel: problem too large for one launch (B·H·Aq·b1 = " +
                         std::to_string(problems) + ")");
  dim3 grid(static_cast<unsigned>(problems), static_cast<unsigned>(qBlocks));
  kernel<<<grid, 32 * rw_warps<NK16>(), smem, s>>>(p, twoBlocks);
  return launch_status("r_step_rowwise_kernel");
}

template <typename T, int D, bool kFirst, bool kLast>
Status launch_r_step(const MonarchParams& p, cudaStream_t s) {
  auto kernel = r_step_kernel<T, D, kFirst, kLast>;
  const size_t smem = r_step_smem_bytes<D, T, kLast>();
  Status st = prepare_smem(kernel, smem, "r_step_kernel");
  if (!st.ok) return st;
  const int64_t problems = int64_t(p.B) * p.H * p.Aq * p.Fk * p.b1;
  const int64_t qBlocks = (p.b2 + kBM - 1) / kBM;
  if (problems > 0x7fffffff || qBlocks > 65535)
    return Status::Error("r_step_kernel: problem too large for one launch (B·H·Aq·Fk·b1 = " +
                         std::to_string(problems) + ")");
  dim3 grid(static_cast<unsigned>(problems), static_cast<unsigned>(qBlocks));
  kernel<<<grid, kThreads, smem, s>>>(p);
  return launch_status("r_step_kernel");
}

// Every R-step: the row-wise kernel where the key row fits (b2 <= 128, or <= 80 for D = 128 with y,
// whose f-blocks of K and V must leave room for two CTAs per SM); else the first step takes the
// persistent ring kernel and later steps r_step_kernel.
template <typename T, int D, bool kFirst, bool kLast>
Status launch_r_step_any(const MonarchParams& p, cudaStream_t s) {
  const int nk = (p.b2 + 15) / 16;
  switch (nk) {
    case 1: return launch_r_step_rowwise<T, D, kFirst, kLast, 1>(p, s);
    case 2: return launch_r_step_rowwise<T, D, kFirst, kLast, 2>(p, s);
    case 3: return launch_r_step_rowwise<T, D, kFirst, kLast, 3>(p, s);
    case 4: return launch_r_step_rowwise<T, D, kFirst, kLast, 4>(p, s);
    case 5: return launch_r_step_rowwise<T, D, kFirst, kLast, 5>(p, s);
    default: break;
  }
  if constexpr (!(D == 128 && kLast)) {
    if (nk == 6) return launch_r_step_rowwise<T, D, kFirst, kLast, 6>(p, s);
    if (nk <= 8) return launch_r_step_rowwise<T, D, kFirst, kLast, 8>(p, s);
  }
  if constexpr (kFirst) return launch_r_step_persist<T, D, kLast>(p, s);
  else return launch_r_step<T, D, false, kLast>(p, s);
}

}  // namespace

Status r_step(const MonarchParams& p, bool first, bool last, Stream stream) {
  if (p.B <= 0 || p.H <= 0 || p.Aq <= 0 || p.Fk <= 0 || p.b1 <= 0 || p.b2 <= 0) return Status::Ok();
  if (p.dtype == kF32) return fp32::r_step(p, first, last, static_cast<cudaStream_t>(stream));
  if (!act_rows_aligned16(p.q) || !act_rows_aligned16(p.k) || !act_rows_aligned16(p.v) ||
      !aligned16(p.aR) || !aligned16(p.aL) || !aligned16(p.y))
    return Status::Error(
        "r_step_kernel: q, k, v and the workspace need 16-byte aligned rows (strides multiples of 8)");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  return dispatch_dtype_dim(p.dtype, p.D, [&](auto tt, auto dd) -> Status {
    using T = typename decltype(tt)::type;
    constexpr int D = decltype(dd)::value;
    if (first) return last ? launch_r_step_any<T, D, true, true>(p, s) : launch_r_step_any<T, D, true, false>(p, s);
    return last ? launch_r_step_any<T, D, false, true>(p, s) : launch_r_step_any<T, D, false, false>(p, s);
  });
}

}  // namespace cuda
}  // namespace monarch
