// l_step_columns_hopper.cu — the non-final L-step (T ≥ 2; l_step.cu describes the stage) on sm_90a for
// b1 ≤ 32, with the results of l_step_columns_cand_kernel: per column (a, j), L = softmax over the
// candidates c = (f, k) of every query i, then aR[a,f,k,j] = Σ_i L·q[a,i,j] and cR[a,f,k,j] = Σ_i L.
//
// CTA and ring as l_step_final_hopper.cu (persistent over (b, h, a, pair of columns); a TMA thread and a
// bias warp fill the slots; rows k ≥ b1 and key tiles past the allowed prefix are zero boxes), with only
// aL in the slots, and every candidate tile streamed twice per item, once per pass. Candidates are the
// wgmma rows (Sᵀ = aL·qᵀ, m64n64: 64 candidates × 64 query columns, of which b1 are real), so:
//   pass 1: per query column an online max / sum of the checked, biased base-2 logits in each thread,
//           combined across the 8 lanes of a column and the 4 warps (shared memory, a named barrier per
//           warpgroup) into lse_i (+INF for an invalid or padding query);
//   pass 2: Pᵀ = 2^(u − lse_i), aR rows = Pᵀ·q (wgmma with Pᵀ from registers and the query box as the
//           MN-major operand), cR = row sums, stored per valid candidate.
// A slot is free once S is computed (only S reads aL), the query box once the item's last Pᵀ·q is done.
// The query box's rows past b1 are zeroed by the consumer before use (they are the K dimension of Pᵀ·q).
#include <monarch/monarch_cuda.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "../common/hopper.cuh"
#include "../common/hopper_launch.cuh"
#include "../common/wgmma.cuh"
#include "l_step_hopper.h"
#include "l_step_hopper_ring.cuh"

namespace monarch {
namespace cuda {
namespace {

using namespace hopper;

constexpr int kCRows = kLRows;    // query rows per consumer box, candidates per tile
constexpr int kCKRows = kLKRows;  // rows k per key tile f in a candidate tile
constexpr int kCThreads = 384;
constexpr int kCSlots = 4;

template <int D>
struct LchSmem {
  static constexpr int kAtoms = D / 64;
  static constexpr int kTileBytes = kCRows * D * 2;  // a consumer's queries, or one aL tile
  static constexpr int kSlotBytes = 2 * kTileBytes;  // aL of consumer 0, of consumer 1
  static constexpr int kQOff = kCSlots * kSlotBytes;
  static constexpr int kBiasOff = kQOff + 2 * kTileBytes;
  static constexpr int kBiasBytes = kCSlots * 2 * kCRows * 4;  // [slot][consumer][candidate]
  static constexpr int kStatOff = kBiasOff + kBiasBytes;
  static constexpr int kStatBytes = 2 * (2 * 4 * kCRows + kCRows) * 4;  // per consumer: m, l [warp][i], lse [i]
  static constexpr int kBarOff = kStatOff + kStatBytes;
  static constexpr int kBars = 4 + 2 * kCSlots;
  static constexpr size_t kBytes = size_t(kBarOff) + kBars * 8 + 1024;
};

template <typename T, int D>
__global__ void __launch_bounds__(kCThreads, 1)
    l_step_columns_hopper_kernel(const __grid_constant__ CUtensorMap tmQ, const __grid_constant__ CUtensorMap tmAL,
                                 MonarchParams p) {
#if MONARCH_SM90A
  using L = LchSmem<D>;
  extern __shared__ unsigned char smem_raw[];
  unsigned char* base = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  float* sBias = reinterpret_cast<float*>(base + L::kBiasOff);
  float* sStat = reinterpret_cast<float*>(base + L::kStatOff);
  uint64_t* bars = reinterpret_cast<uint64_t*>(base + L::kBarOff);
  uint64_t* fullQ = bars;
  uint64_t* emptyQ = bars + 2;
  uint64_t* full = bars + 4;
  uint64_t* empty = full + kCSlots;
  auto tile = [&](int s, int c) { return base + s * L::kSlotBytes + c * L::kTileBytes; };
  auto qbox = [&](int c) { return base + L::kQOff + c * L::kTileBytes; };

  const int wg = threadIdx.x / 128;
  const int nJp = (p.b2 + 1) / 2;
  const int64_t nWork = lhopper_items(p);
  const int64_t nPairs = lhopper_pairs(p);

  if (threadIdx.x == 0) {
    for (int c = 0; c < 2; ++c) {
      mbar_init(fullQ + c, 1);
      mbar_init(emptyQ + c, 128);
    }
    for (int s = 0; s < kCSlots; ++s) {
      mbar_init(full + s, 1 + 32);  // the TMA thread's expect_tx arrival and the bias warp's 32 lanes
      mbar_init(empty + s, 256);
    }
    mbar_fence_init();
  }
  __syncthreads();

  if (wg == 0) {  // ---- producer ----
    regs_dealloc<40>();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (warp == 0 && lane == 0) {  // TMA: per item the queries, then the candidate tiles twice
      tma_prefetch_map(&tmQ);
      tma_prefetch_map(&tmAL);
      uint64_t it = 0;  // ring uses (64-bit: never wraps)
      int nq[2] = {0, 0};
      for (int64_t w = blockIdx.x; w < nWork; w += gridDim.x) {
        const LHopperItem t = lhopper_item(w, p, nJp);
        lhopper_issue_queries<L::kAtoms>(p, t, &tmQ, qbox(0), L::kTileBytes, fullQ, emptyQ, nq);
        const int active = 1 + int(2 * t.jp + 1 < p.b2);
        for (int x = 0; x < 2 * t.nTiles; ++x, ++it) {
          const int s = it % kCSlots;
          const uint32_t ph = (it / kCSlots) & 1;
          mbar_wait(empty + s, ph ^ 1);
          mbar_arrive_expect_tx(full + s, uint32_t(active * L::kTileBytes));
          for (int c = 0; c < active; ++c)
            lhopper_issue_candidates<L::kAtoms>(tile(s, c), &tmAL, full + s, t, x % t.nTiles, 2 * t.jp + c, nPairs);
        }
      }
    } else if (warp == 1) {  // biases, in the same order
      uint64_t it = 0;
      for (int64_t w = blockIdx.x; w < nWork; w += gridDim.x) {
        const LHopperItem t = lhopper_item(w, p, nJp);
        for (int x = 0; x < 2 * t.nTiles; ++x, ++it) {
          const int s = it % kCSlots;
          const uint32_t ph = (it / kCSlots) & 1;
          mbar_wait(empty + s, ph ^ 1);
          lhopper_write_biases(p, t, x % t.nTiles, sBias + s * 2 * kCRows, lane);
          mbar_arrive(full + s);
        }
      }
    }
    return;
  }

  // ---- consumers ----
  regs_alloc<232>();
  const int c = wg - 1;
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  const int tid = threadIdx.x % 128;
  const int g = lane / 4, qd = lane % 4;
  const float scale2 = p.scale * kLog2e;
  const uint32_t qAddr = smem_addr(qbox(c));
  float* sM = sStat + c * (2 * 4 * kCRows + kCRows);  // [warp][i]
  float* sL = sM + 4 * kCRows;                        // [warp][i]
  float* sLse = sL + 4 * kCRows;                      // [i]: base-2 log-partition; +INF ⇒ the query's L is 0

  float S[kCRows / 8][4];
  uint32_t pa[kCRows / 16][4];
  float acc[D / 8][4];
  float m[kCRows / 8][2], l[kCRows / 8][2];

  // Sᵀ of slot s: this warp's 16 candidates (rows g, g + 8) × the 64 query columns, then biased
  // base-2 logits. checked (pass 1): a masked candidate's logit is −INF and a visible one's non-finite
  // logit NaN (visible_logit), as l_step_columns_cand_kernel.
  auto logits = [&](bool checked, int s) {
    wgmma_fence();
    const uint32_t aAddr = smem_addr(tile(s, c));
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const uint32_t atom = kk / 4, off = (kk % 4) * 32;
      Wgmma<T, kCRows>::ss(S, desc_kmajor(aAddr + atom * kCRows * 128 + off), desc_kmajor(qAddr + atom * kCRows * 128 + off),
                           kk > 0 ? 1 : 0);
    }
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs(S);
    float bias[2];
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) bias[hh] = sBias[(s * 2 + c) * kCRows + warp * 16 + g + 8 * hh] * kLog2e;
    mbar_arrive(empty + s);  // only S reads the slot (its biases are in registers now)
#pragma unroll
    for (int n = 0; n < kCRows / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float x = S[n][e] * scale2 - bias[e >> 1];
        S[n][e] = !checked ? x : bias[e >> 1] < INFINITY ? visible_logit(x) : -INFINITY;
      }
  };

  uint64_t it = 0;
  int nq = 0;
  for (int64_t w = blockIdx.x; w < nWork; w += gridDim.x) {
    const LHopperItem t = lhopper_item(w, p, nJp);
    const int j = 2 * t.jp + c;
    const bool active = j < p.b2;
    const int fLim = t.fLim, nTiles = t.nTiles;
    if (!active) {  // free every slot of the item after its copies landed (see l_step_final_hopper.cu)
      for (int x = 0; x < 2 * nTiles; ++x, ++it) {
        mbar_wait(full + it % kCSlots, (it / kCSlots) & 1);
        mbar_arrive(empty + it % kCSlots);
      }
      continue;
    }
    mbar_wait(fullQ + c, nq & 1);
    ++nq;
    // Rows i ≥ b1 of the query box are other columns' tokens (or zeros): they are the K dimension of
    // Pᵀ·q, where 0 · NaN would spread a NaN token into every aR row, so they are zeroed (whole
    // 128-byte rows: the swizzle only permutes chunks within a row), then made visible to wgmma.
    {
      unsigned char* qb = qbox(c);
      const int pad = kCRows - p.b1, chunks = pad * 8;  // 16-byte chunks per atom
      for (int x = tid; x < L::kAtoms * chunks; x += 128) {
        const int at = x / chunks, r = p.b1 + (x % chunks) / 8, ch = x % 8;
        *reinterpret_cast<uint4*>(qb + at * kCRows * 128 + r * 128 + ch * 16) = make_uint4(0, 0, 0, 0);
      }
      asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
      named_sync(1 + c, 128);
    }
    const int64_t pair0 = t.pair0;
    const int64_t qTok0 = int64_t(t.a) * p.b1 * p.b2 + j;
    const uint8_t* qv = p.queryValid ? p.queryValid + int64_t(t.b) * p.Aq * p.b1 * p.b2 + qTok0 : nullptr;

    // ---- pass 1: lse_i ----
#pragma unroll
    for (int n = 0; n < kCRows / 8; ++n) m[n][0] = m[n][1] = -INFINITY, l[n][0] = l[n][1] = 0.f;
    for (int tt = 0; tt < nTiles; ++tt, ++it) {
      const int s = it % kCSlots;
      mbar_wait(full + s, (it / kCSlots) & 1);
      logits(true, s);
#pragma unroll
      for (int n = 0; n < kCRows / 8; ++n)
#pragma unroll
        for (int cc = 0; cc < 2; ++cc) {
          const float x0 = S[n][cc], x1 = S[n][cc + 2];
          const float mn = fmaxf(m[n][cc], fmaxf(x0, x1));
          const float mu = mn == -INFINITY ? 0.f : mn;  // 2^(−INF − mu) = 0; a NaN logit makes ℓ NaN
          l[n][cc] = l[n][cc] * fast_exp2(m[n][cc] - mu) + fast_exp2(x0 - mu) + fast_exp2(x1 - mu);
          m[n][cc] = mn;
        }
    }
#pragma unroll
    for (int n = 0; n < kCRows / 8; ++n)
#pragma unroll
      for (int cc = 0; cc < 2; ++cc)
#pragma unroll
        for (int off = 4; off < 32; off <<= 1) {
          const float mo = __shfl_xor_sync(0xffffffffu, m[n][cc], off);
          const float lo = __shfl_xor_sync(0xffffffffu, l[n][cc], off);
          const float mn = fmaxf(m[n][cc], mo);
          const float mu = mn == -INFINITY ? 0.f : mn;
          l[n][cc] = l[n][cc] * fast_exp2(m[n][cc] - mu) + lo * fast_exp2(mo - mu);
          m[n][cc] = mn;
        }
    named_sync(1 + c, 128);  // the previous item's pass 2 is done reading sLse
    if (g == 0) {
#pragma unroll
      for (int n = 0; n < kCRows / 8; ++n)
#pragma unroll
        for (int cc = 0; cc < 2; ++cc) {
          const int i = n * 8 + 2 * qd + cc;
          sM[warp * kCRows + i] = m[n][cc];
          sL[warp * kCRows + i] = l[n][cc];
        }
    }
    named_sync(1 + c, 128);
    if (tid < kCRows) {
      const int i = tid;
      float mm = -INFINITY;
#pragma unroll
      for (int ww = 0; ww < 4; ++ww) mm = fmaxf(mm, sM[ww * kCRows + i]);
      const float mu = mm == -INFINITY ? 0.f : mm;
      float ll = 0.f;
#pragma unroll
      for (int ww = 0; ww < 4; ++ww) ll += sL[ww * kCRows + i] * fast_exp2(sM[ww * kCRows + i] - mu);
      // (a NaN ℓ passes: lse is NaN then, and so are the aR, cR it feeds, as on the CPU)
      const bool valid = i < p.b1 && !(ll <= 0.f) && (qv == nullptr || qv[int64_t(i) * p.b2] != 0);
      sLse[i] = valid ? mm + log2f(ll) : INFINITY;
    }
    named_sync(1 + c, 128);

    // ---- pass 2: aR, cR ----
    for (int tt = 0; tt < nTiles; ++tt, ++it) {
      const int s = it % kCSlots;
      mbar_wait(full + s, (it / kCSlots) & 1);
      logits(false, s);
      float csum[2] = {0.f, 0.f};
#pragma unroll
      for (int n = 0; n < kCRows / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float pr = fast_exp2(S[n][e] - sLse[n * 8 + 2 * qd + (e & 1)]);
          csum[e >> 1] += pr;
          S[n][e] = pr;
        }
      c_to_a_frags<kCRows, T>(pa, S);
      zero_acc<D>(acc);
      fence_regs(acc);
      wgmma_fence();
#pragma unroll
      for (int kt = 0; kt < kCRows / 16; ++kt) Wgmma<T, D>::rs(acc, pa[kt], desc_mnmajor(qAddr + kt * 16 * 128, kCRows * 128), 1);
      wgmma_commit();
      wgmma_wait<0>();
      fence_regs(acc);
      if (tt == nTiles - 1) mbar_arrive(emptyQ + c);  // the queries are no longer read

      // Candidate rows r = warp·16 + g (+ 8) of the tile: key tile f = 2·tt + r / 32, row k = r % 32.
      const float one[2] = {1.f, 1.f};
      auto cand_row = [&](int r) -> int64_t {  // aR / cR row of tile row r, or −1 for padding
        const int f = 2 * tt + r / kCKRows, k = r % kCKRows;
        if (f >= fLim || k >= p.b1) return -1;
        return ((pair0 + f) * p.b1 + k) * p.b2 + j;
      };
      store_rows<D, T>(acc, one, lane, [&](int r) -> T* {
        const int64_t row = cand_row(warp * 16 + r);
        return row >= 0 ? static_cast<T*>(p.aR) + row * D : nullptr;
      });
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const float cs = quad_sum(csum[hh]);
        const int64_t row = cand_row(warp * 16 + g + 8 * hh);
        if (qd == 0 && row >= 0) p.cR[row] = cs;
      }
    }
  }
#else
  static_assert(LchSmem<D>::kAtoms >= 1, "head dim is a multiple of 64");
#endif
}

template <typename T, int D>
Status launch(const MonarchParams& p, cudaStream_t s) {
  CUtensorMap mq, mal;
  Status st = lhopper_encode_queries(&mq, p, D);
  if (st.ok) st = lhopper_encode_candidates(&mal, p.aL, p, D);
  if (!st.ok) return Status::Error("l_step_columns_hopper_kernel: " + st.message);
  return launch_persistent(l_step_columns_hopper_kernel<T, D>, "l_step_columns_hopper_kernel", LchSmem<D>::kBytes,
                           kCThreads, lhopper_items(p), p.maxCtas, s, mq, mal, p);
}

}  // namespace

bool l_step_columns_hopper_applies(const MonarchParams& p) {
  // (A preview: verified on hardware but slower than the mma.sync kernel it would replace, kernel-preview.md;
  // lhopper_shape_ok holds the MONARCH_PREVIEW_KERNELS gate.)
  return p.aL != nullptr && p.cL != nullptr && p.aR != nullptr && p.cR != nullptr &&
         lhopper_shape_ok(p, tma::StepKernel::kLColumns, false);
}

Status l_step_columns_hopper(const MonarchParams& p, cudaStream_t s) {
  return dispatch_dtype_dim(p.dtype, p.D, [&](auto tt, auto dd) -> Status {
    using T = typename decltype(tt)::type;
    constexpr int D = decltype(dd)::value;
    return launch<T, D>(p, s);
  });
}

}  // namespace cuda
}  // namespace monarch
