// l_step.cu — the Monarch L-step (docs/ALGORITHMS.md §A.2, §A.6, §B.3).
//
// Per (b, h, query tile a, column j) the L-step is attention over the candidates c = (f, k), f in the
// allowed prefix [0, fLim) of key tiles (block-causal allows a prefix), k ∈ [b1]:
//   queries q[a,i,j] (i ∈ [b1], tokens (a·b1+i)·b2+j),  keys aL[a,f,j,k],  additive bias −cL[a,f,j,k]
//   logit u = s·⟨q, aL⟩ − cL   (cL = +INF ⇒ the candidate is masked)
//
// final (l_step_final_ring_kernel): o[a,i,j] = Σ_c softmax_c(u)·y[a,f,j,k]. FlashAttention over Fk·b1
//   candidates with a per-key bias; one CTA of ceil(b1/16) ≤ 4 warps per (b,h,a,j, block of queries i),
//   candidate tiles of 32 streamed through a 4-stage cp.async ring (see the kernel).
// non-final (l_step_columns_kernel): L = softmax_c(u) zeroed for invalid queries, then the column
//   reductions aR[a,f,k,j] = Σ_i L·q[a,i,j], cR[a,f,k,j] = Σ_i L. One CTA per (b,h,a,j):
//   pass 1 computes every query's log-partition lse_i (streaming max/sum over the candidates) into
//   shared memory; pass 2 walks candidate blocks of 64 and, for each, query tiles of 64: Sᵀ = aL·qᵀ,
//   Pᵀ = 2^(Sᵀ·s·log2e − cL·log2e − lse2_i), aR += Pᵀ·q and cR += Σ_i Pᵀ (a tensor-core Lᵀ·Q).
#include "../common/fp32_stages.h"
#include <monarch/monarch_cuda.h>
#include "../common/online_softmax.cuh"
#include "../common/rl_pipeline.cuh"

namespace monarch {
namespace cuda {
namespace {

using namespace detail;

constexpr int kBM = 64;  // rows per CTA (queries i in the final step, candidates c in pass 2): 4 warps × 16
constexpr int kBN = 64;  // columns per streamed tile (candidates, or queries in pass 2)
constexpr int kThreads = 128;

// Geometry of one (b, h, a, j) column problem.
struct Column {
  int b, h, a, j;
  int nCand;          // fLim · b1 allowed candidates
  int64_t candBase;   // index of (a, f = 0, j, k = 0) in the aL / cL / y layout
  int64_t qTok0;      // token of query i = 0: (a·b1)·b2 + j  (query i: + i·b2)
};

__device__ __forceinline__ Column column_of(const MonarchParams& p, int64_t pid) {
  Column c;
  c.j = int(pid % p.b2);  pid /= p.b2;
  c.a = int(pid % p.Aq);  pid /= p.Aq;
  c.h = int(pid % p.H);
  c.b = int(pid / p.H);
  c.nCand = allowed_key_tiles(p, c.a) * p.b1;
  c.candBase = ((int64_t(c.b) * p.H + c.h) * p.Aq + c.a) * p.Fk * p.b2 * p.b1 + int64_t(c.j) * p.b1;
  c.qTok0 = int64_t(c.a) * p.b1 * p.b2 + c.j;
  return c;
}
// aL / cL / y index of candidate cand = f·b1 + k.
__device__ __forceinline__ int64_t cand_index(const MonarchParams& p, const Column& c, int cand) {
  const int f = cand / p.b1, k = cand - f * p.b1;
  return c.candBase + int64_t(f) * p.b2 * p.b1 + k;
}

// Shared memory (non-final kernel): a 64-row tile, NB double-buffered 64-row tiles, and 2×64 candidate biases.
template <int D, typename T, int NB>
constexpr size_t l_step_smem_bytes() {
  return size_t(kBM + 2 * NB * kBN) * Smem<D>::kLd * sizeof(T) + 2 * kBN * sizeof(float);
}

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
#pragma unroll
    for (int n = 0; n < BN / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int r = n * 8 + 2 * qd + e;
        const float bias = t * BN + r < col.nCand ? sBias[s * BN + r] * kLog2e : INFINITY;
        S[n][e] = S[n][e] * scale2 - bias;
        S[n][e + 2] = S[n][e + 2] * scale2 - bias;
      }
    }
    float alpha[2];
    sm.update(S, alpha);
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

// ---------------------------------------------------------------------------------------------
template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 2) l_step_columns_kernel(MonarchParams p) {
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
#pragma unroll
      for (int n = 0; n < kBN / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) S[n][e] = S[n][e] * scale2 - sBias[buf * kBN + n * 8 + 2 * qd + (e & 1)];
      }
      float alpha[2];
      sm.update(S, alpha);
      __syncthreads();
    }
    cp_async_wait<0>();
    sm.finalize();
    if (qd == 0) {
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int i = qb * kBM + warp * 16 + g + 8 * hh;
        const bool valid = i < p.b1 && sm.l[hh] > 0.f && (qv == nullptr || qv[int64_t(i) * p.b2] != 0);
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

    const float one[2] = {1.f, 1.f};
    const int wc0 = c0 + warp * 16;
    // aR / cR index of candidate (f, k): ((pair(a, f))·b1 + k)·b2 + j
    auto ar_index = [&](int cand) -> int64_t {
      const int f = cand / p.b1, k = cand - f * p.b1;
      const int64_t pair = ((int64_t(col.b) * p.H + col.h) * p.Aq + col.a) * p.Fk + f;
      return (pair * p.b1 + k) * p.b2 + col.j;
    };
    store_rows<D, T>(acc, one, lane, [&](int r) -> T* {
      return wc0 + r < col.nCand ? static_cast<T*>(p.aR) + ar_index(wc0 + r) * D : nullptr;
    });
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const float cs = quad_sum(csum[hh]);
      const int c = wc0 + g + 8 * hh;
      if (qd == 0 && c < col.nCand) p.cR[ar_index(c)] = cs;
    }
  }
}

template <typename T, int D>
Status launch_l_step(const MonarchParams& p, bool final, cudaStream_t s) {
  const int64_t columns = int64_t(p.B) * p.H * p.Aq * p.b2;
  if (columns > 0x7fffffff)
    return Status::Error("l_step: problem too large for one launch (B·H·Aq·b2 = " + std::to_string(columns) + ")");
  if (final) {
    if (p.b1 <= 16) return launch_l_final_ring<T, D, 1>(p, columns, s);
    if (p.b1 <= 32) return launch_l_final_ring<T, D, 2>(p, columns, s);
    if (p.b1 <= 48) return launch_l_final_ring<T, D, 3>(p, columns, s);
    // D = 64, b1 in (64, 128]: one 8-warp CTA per column instead of two 4-warp CTAs that each stream
    // the column's whole candidate list (half the L2 traffic).
    if constexpr (D == 64)
      if (p.b1 > 64 && p.b1 <= 128) return launch_l_final_ring<T, D, 8>(p, columns, s);
    return launch_l_final_ring<T, D, 4>(p, columns, s);
  }
  auto kernel = l_step_columns_kernel<T, D>;
  const int64_t nQB = (p.b1 + kBM - 1) / kBM;
  const size_t smem = l_step_smem_bytes<D, T, 1>() + size_t(nQB) * kBM * sizeof(float);  // + lse
  Status st = prepare_smem(kernel, smem, "l_step_columns_kernel");
  if (!st.ok) return st;
  kernel<<<unsigned(columns), kThreads, smem, s>>>(p);
  return launch_status("l_step_columns_kernel");
}

}  // namespace

Status l_step(const MonarchParams& p, bool final, Stream stream) {
  if (p.B <= 0 || p.H <= 0 || p.Aq <= 0 || p.Fk <= 0 || p.b1 <= 0 || p.b2 <= 0) return Status::Ok();
  if (p.dtype == kF32) return fp32::l_step(p, final, static_cast<cudaStream_t>(stream));
  if (!act_rows_aligned16(p.q) || (final && !act_rows_aligned16(p.o)) || !aligned16(p.aR) ||
      !aligned16(p.aL) || !aligned16(p.y))
    return Status::Error(
        "l_step: q, o and the workspace need 16-byte aligned rows (base aligned, strides multiples of 8)");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  return dispatch_dtype_dim(p.dtype, p.D, [&](auto tt, auto dd) -> Status {
    using T = typename decltype(tt)::type;
    constexpr int D = decltype(dd)::value;
    return launch_l_step<T, D>(p, final, s);
  });
}

}  // namespace cuda
}  // namespace monarch
