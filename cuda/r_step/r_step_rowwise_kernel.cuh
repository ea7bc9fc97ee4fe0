// r_step_rowwise_kernel.cuh — the R-step for key rows of b2 <= 16·NK16 keys (b2 <= 128, <= 80 for D = 128
// with y): the whole key row of a key tile at once, one-pass softmax, W = NK16 warps per CTA. First step
// (L = I): a CTA loops over the key tiles f; later steps: one (a, f, k) problem per CTA.
#pragma once

#include "r_step_config.cuh"

namespace monarch {
namespace cuda {
namespace {  // this header is included by r_step.cu only

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
  static_assert(D == 64 || D == 128, "r_step_rowwise_kernel: head dim 64 or 128 (mma fragments of 16, 16-byte rows)");
  static_assert((NK16 >= 1 && NK16 <= 6) || NK16 == 8,
                "r_step_rowwise_kernel: NK16 (16-key blocks per key row) in 1..6 or 8");
  static_assert(!(D == 128 && kLast) || NK16 <= 5,
                "r_step_rowwise_kernel: D = 128 with y fits b2 <= 80 only (two f-blocks of K and V, two CTAs per SM)");
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

// The R temperature of query column j (docs/ALGORITHMS.md §A.5): 1 on the first step, else r_inv_temp.
template <bool kFirst>
__device__ __forceinline__ float row_inv_temp(const MonarchParams& p, int64_t rowJ0, int j) {
  if constexpr (kFirst) {
    return 1.f;
  } else {
    if (j >= p.b2) return 1.f;
    return r_inv_temp(p.cR[rowJ0 + j], p.maxInvTemp);
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
        if (j < b2) p.cL[colK0 + int64_t(j) * p.b1] = sm.l[hh] <= 0.f ? INFINITY : sm.neg_entropy(hh);
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

}  // namespace
}  // namespace cuda
}  // namespace monarch
