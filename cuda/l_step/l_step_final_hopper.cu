// l_step_final_hopper.cu — the final L-step (docs/ALGORITHMS.md §A.2; l_step.cu describes the stage) on
// sm_90a for b1 ≤ 64 (MonarchRT at 480p: b1 = 30, at 720p: 45), with the results of l_step_final_ring_kernel:
//   o[a,i,j] = Σ_c softmax_c(s·⟨q[a,i,j], aL[a,f,j,k]⟩ − cL[a,f,j,k])·y[a,f,j,k],  c = (f, k), f < fLim.
// The stage is a stream of the aL and y rows (4.2 GB at 480p) with little arithmetic, so the kernel is
// built to keep the copy engine busy:
//
// CTA: three warpgroups, persistent over work items (b, h, a, pair of columns j = 2·jp, 2·jp + 1).
//   producer (warpgroup 0):
//     thread 0 — TMA boxes of each consumer's queries (a 5-D map {D, b2, rows, H, B}: 64 rows i of
//       column j; rows past the column's b1 are other columns' tokens or zeros, never stored) and per
//       candidate tile of both consumers' aL and y rows into a 3-slot ring. A tile is two key tiles f of
//       32 rows k for b1 ≤ 32, else one of 64 (KR; a 4-D map {D, b1, b2, pairs}: rows k ≥ b1 are out of
//       bounds and zero-filled; a key
//       tile f ≥ fLim is loaded at an out-of-bounds coordinate, so it is all zeros — never another
//       column's or an unwritten pair's rows, whose NaNs 0 · NaN would spread);
//     warp 1 — the biases cL of the tile's 64 candidates (+INF for the padding) into the slot, one
//       mbarrier arrival per lane (release: the consumers' wait sees them).
//   consumers (warpgroups 1, 2): one column each; per tile S = Q·aLᵀ (wgmma m64n64, both operands in
//     shared memory), the online softmax with the bias and the −Inf poisoning of the ring kernel
//     (OnlineSoftmax, its C-fragment layout is the wgmma accumulator's), O += P·y (wgmma, P from
//     registers, y MN-major), then the normalised rows i < b1 stored. Tile t's S is issued together
//     with tile t − 1's P·y, so the softmax runs behind a product (MONARCH_L_FINAL_PIPE=0: in turn).
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

constexpr int kHRows = kLRows;  // query rows per consumer box, candidates per tile
constexpr int kHThreads = 384;
constexpr int kSlots = 3;  // 3 × 64 KB at d 128 still fits next to the query boxes (232,016 of 232,448 B)

template <int D>
struct LfhSmem {
  static constexpr int kAtoms = D / 64;
  static constexpr int kTileBytes = kHRows * D * 2;   // a consumer's queries, or one aL / y tile
  static constexpr int kSlotBytes = 4 * kTileBytes;   // aL, y of consumer 0, then of consumer 1
  static constexpr int kQOff = kSlots * kSlotBytes;
  static constexpr int kBiasOff = kQOff + 2 * kTileBytes;
  static constexpr int kBiasBytes = kSlots * 2 * kHRows * 4;  // [slot][consumer][candidate] floats
  static constexpr int kBarOff = kBiasOff + kBiasBytes;
  static constexpr int kBars = 4 + 2 * kSlots;  // Q full/empty per consumer; slot full/empty
  static constexpr size_t kBytes = size_t(kBarOff) + kBars * 8 + 1024;  // + alignment slack
};

template <typename T, int D, bool kPipe, int KR>
__global__ void __launch_bounds__(kHThreads, 1)
    l_step_final_hopper_kernel(const __grid_constant__ CUtensorMap tmQ, const __grid_constant__ CUtensorMap tmAL,
                               const __grid_constant__ CUtensorMap tmY, MonarchParams p) {
#if MONARCH_SM90A
  using L = LfhSmem<D>;
  extern __shared__ unsigned char smem_raw[];
  unsigned char* base = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  float* sBias = reinterpret_cast<float*>(base + L::kBiasOff);
  uint64_t* bars = reinterpret_cast<uint64_t*>(base + L::kBarOff);
  uint64_t* fullQ = bars;       // [2]
  uint64_t* emptyQ = bars + 2;  // [2]
  uint64_t* full = bars + 4;    // [kSlots]
  uint64_t* empty = full + kSlots;
  // Slot s, consumer c: aL tile (i = 0) or y tile (i = 1).
  auto tile = [&](int s, int c, int i) { return base + s * L::kSlotBytes + (2 * c + i) * L::kTileBytes; };
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
    for (int s = 0; s < kSlots; ++s) {
      mbar_init(full + s, 1 + 32);  // the TMA thread's expect_tx arrival and the bias warp's 32 lanes
      mbar_init(empty + s, 256);
    }
    mbar_fence_init();
  }
  __syncthreads();

  if (wg == 0) {  // ---- producer ----
    regs_dealloc<40>();  // the bias warp's index arithmetic spills at 24 (128·40 + 256·232 ≤ 64 K)
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (warp == 0 && lane == 0) {  // TMA
      tma_prefetch_map(&tmQ);
      tma_prefetch_map(&tmAL);
      tma_prefetch_map(&tmY);
      uint64_t it = 0;  // ring uses (64-bit: never wraps)
      int nq[2] = {0, 0};
      for (int64_t w = blockIdx.x; w < nWork; w += gridDim.x) {
        const LHopperItem t = lhopper_item<KR>(w, p, nJp);
        lhopper_issue_queries<L::kAtoms>(p, t, &tmQ, qbox(0), L::kTileBytes, fullQ, emptyQ, nq);
        const int active = 1 + int(2 * t.jp + 1 < p.b2);
        for (int tt = 0; tt < t.nTiles; ++tt, ++it) {
          const int s = it % kSlots;
          const uint32_t ph = (it / kSlots) & 1;
          mbar_wait(empty + s, ph ^ 1);
          mbar_arrive_expect_tx(full + s, uint32_t(active * 2 * L::kTileBytes));
          for (int c = 0; c < active; ++c) {
            lhopper_issue_candidates<L::kAtoms, KR>(tile(s, c, 0), &tmAL, full + s, t, tt, 2 * t.jp + c, nPairs);
            lhopper_issue_candidates<L::kAtoms, KR>(tile(s, c, 1), &tmY, full + s, t, tt, 2 * t.jp + c, nPairs);
          }
        }
      }
    } else if (warp == 1) {  // biases
      uint64_t it = 0;
      for (int64_t w = blockIdx.x; w < nWork; w += gridDim.x) {
        const LHopperItem t = lhopper_item<KR>(w, p, nJp);
        for (int tt = 0; tt < t.nTiles; ++tt, ++it) {
          const int s = it % kSlots;
          const uint32_t ph = (it / kSlots) & 1;
          mbar_wait(empty + s, ph ^ 1);
          lhopper_write_biases<KR>(p, t, tt, sBias + s * 2 * kHRows, lane);
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
  const int qd = lane % 4;
  const float scale2 = p.scale * kLog2e;
  const uint32_t qAddr = smem_addr(qbox(c));

  float S[kHRows / 8][4];
  uint32_t pa[kHRows / 16][4];
  float O[D / 8][4];

  uint64_t it = 0;
  int nq = 0;
  for (int64_t w = blockIdx.x; w < nWork; w += gridDim.x) {
    const LHopperItem t = lhopper_item<KR>(w, p, nJp);
    const int j = 2 * t.jp + c;
    const bool active = j < p.b2;
    const int nTiles = t.nTiles;
    if (active) mbar_wait(fullQ + c, nq & 1);
    zero_acc<D>(O);
    OnlineSoftmax<kHRows, false> sm;
    sm.init();

    // The softmax of tile S (slot s) in place, with the bias and the −Inf poisoning: alpha rescales O.
    auto softmax_tile = [&](int s, float (&alpha)[2]) {
      const float* bias = sBias + (s * 2 + c) * kHRows;
      float mn[2];  // smallest raw score per row (l_step_config.cuh)
      biased_logits<kHRows>(S, mn, scale2, qd, [&](int r) { return bias[r] * kLog2e; });
      sm.update(S, alpha);
      sm.poison_neg_inf(S, mn, scale2);
    };
    auto issue_s = [&](int s) {
      const uint32_t aAddr = smem_addr(tile(s, c, 0));
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        const uint32_t atom = kk / 4, off = (kk % 4) * 32;
        Wgmma<T, kHRows>::ss(S, desc_kmajor(qAddr + atom * kHRows * 128 + off),
                             desc_kmajor(aAddr + atom * kHRows * 128 + off), kk > 0 ? 1 : 0);
      }
      wgmma_commit();
    };
    auto issue_pv = [&](int s) {
      const uint32_t yAddr = smem_addr(tile(s, c, 1));
#pragma unroll
      for (int kt = 0; kt < kHRows / 16; ++kt)
        Wgmma<T, D>::rs(O, pa[kt], desc_mnmajor(yAddr + kt * 16 * 128, kHRows * 128), 1);
      wgmma_commit();
    };

    if (kPipe && active) {
      // S of tile t and P·y of tile t − 1 issued together; the softmax of t runs while P·y of t − 1
      // uses the tensor cores. A consumer holds two slots at a time here (one in the plain loop).
      {  // tile 0: S only
        const int s0 = it % kSlots;
        mbar_wait(full + s0, (it / kSlots) & 1);
        wgmma_fence();
        issue_s(s0);
        wgmma_wait<0>();
        fence_regs(S);
        if (nTiles == 1) mbar_arrive(emptyQ + c);  // the queries are no longer read
        float alpha[2];
        softmax_tile(s0, alpha);  // O is still zero: nothing to rescale
        c_to_a_frags<kHRows, T>(pa, S);
      }
      for (int tt = 1; tt < nTiles; ++tt) {
        const int sc = (it + tt) % kSlots, sp = (it + tt - 1) % kSlots;
        mbar_wait(full + sc, ((it + tt) / kSlots) & 1);
        wgmma_fence();
        issue_s(sc);
        issue_pv(sp);
        wgmma_wait<1>();  // S_t done; P·y of t − 1 may still run
        fence_regs(S);
        if (tt == nTiles - 1) mbar_arrive(emptyQ + c);
        float alpha[2];
        softmax_tile(sc, alpha);
        wgmma_wait<0>();
        fence_regs(O);
        mbar_arrive(empty + sp);
        rescale_rows<D>(O, alpha);
        c_to_a_frags<kHRows, T>(pa, S);
      }
      const int sl = (it + nTiles - 1) % kSlots;
      fence_regs(O);
      wgmma_fence();
      issue_pv(sl);
      wgmma_wait<0>();
      fence_regs(O);
      mbar_arrive(empty + sl);
      it += nTiles;
    } else {
      for (int tt = 0; tt < nTiles; ++tt, ++it) {
        const int s = it % kSlots;
        const uint32_t ph = (it / kSlots) & 1;
        mbar_wait(full + s, ph);  // also when idle, so this consumer's arrival belongs to this use of s
        if (!active) {
          mbar_arrive(empty + s);
          continue;
        }
        wgmma_fence();
        issue_s(s);
        wgmma_wait<0>();
        fence_regs(S);
        if (tt == nTiles - 1) mbar_arrive(emptyQ + c);  // the queries are no longer read
        float alpha[2];
        softmax_tile(s, alpha);
        rescale_rows<D>(O, alpha);
        c_to_a_frags<kHRows, T>(pa, S);
        fence_regs(O);
        wgmma_fence();
        issue_pv(s);
        wgmma_wait<0>();
        fence_regs(O);
        mbar_arrive(empty + s);
      }
    }
    if (!active) continue;
    ++nq;

    sm.finalize();
    float inv[2];
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) inv[hh] = sm.l[hh] > 0.f ? 1.f / sm.l[hh] : 0.f;
    const int64_t qTok0 = int64_t(t.a) * p.b1 * p.b2 + j;
    T* og = static_cast<T*>(p.o.data) + t.b * p.o.sB + t.h * p.o.sH + qTok0 * p.o.sS;
    const int64_t oStride = int64_t(p.b2) * p.o.sS;
    const int wi0 = warp * 16;
    const int nRows = p.b1 - wi0;
    store_rows<D, T>(O, inv, lane, [&](int r) -> T* { return r < nRows ? og + int64_t(wi0 + r) * oStride : nullptr; });
  }
#else
  static_assert(LfhSmem<D>::kAtoms >= 1, "head dim is a multiple of 64");
#endif
}

// MONARCH_L_FINAL_PIPE=0 (read once; an A/B switch): each consumer runs S, the softmax and P·y of a tile
// one after another instead of issuing tile t's S with tile t − 1's P·y.
bool lfinal_pipe() {
  static const bool off = tma::env_is("MONARCH_L_FINAL_PIPE", "0");
  return !off;
}

template <typename T, int D>
Status launch(const MonarchParams& p, cudaStream_t s) {
  CUtensorMap mq, mal, my;
  const int kr = lhopper_key_rows(p.b1);
  Status st = lhopper_encode_queries(&mq, p, D);
  if (st.ok) st = lhopper_encode_candidates(&mal, p.aL, p, D, kr);
  if (st.ok) st = lhopper_encode_candidates(&my, p.y, p, D, kr);
  if (!st.ok) return Status::Error("l_step_final_hopper_kernel: " + st.message);
  auto kernel = kr == kLKRows
                    ? (lfinal_pipe() ? l_step_final_hopper_kernel<T, D, true, kLKRows> : l_step_final_hopper_kernel<T, D, false, kLKRows>)
                    : (lfinal_pipe() ? l_step_final_hopper_kernel<T, D, true, kLRows> : l_step_final_hopper_kernel<T, D, false, kLRows>);
  return launch_persistent(kernel, "l_step_final_hopper_kernel", LfhSmem<D>::kBytes, kHThreads, lhopper_items(p), p.maxCtas, s,
                           mq, mal, my, p);
}

// The size rule (MONARCH_PREVIEW_KERNELS unset), from the H200 A/B of session 7
// (benchmarks/notes/kernel-preview.md, "Size rules"): a key tile f fills b1 of the 32 candidate rows a
// tile holds, so the kernel wins where b1 ≥ 16 (480p MonarchRT b1 = 30: 4.81 → 4.51 ms; its
// self-forcing chunk 0.780 → 0.740; VMonarch 480p b1 = 21: 1.25 → 1.20) and loses where tiles are mostly
// padding (VMonarch's self-forcing chunk, b1 = 3: 3.09 → 3.38).
// b1 in 33..64 (one key tile of 64 rows per candidate tile, session 13): on where a column has more
// than one key tile (H200, 720p MonarchRT b1 = 45, Fk = 21: final L-step 4.155 → 3.706 ms), off for one
// tile (seq-4k, b1 = 64, Fk = 1: 0.018 → 0.020 ms). Fk between 2 and 20 was not measured.
bool l_final_hopper_by_default(const MonarchParams& p) {
  return p.b1 >= 16 && (p.b1 <= kLKRows || p.Fk >= 2);
}

}  // namespace

bool l_step_final_hopper_applies(const MonarchParams& p) {
  // (lhopper_shape_ok holds the size rule and the MONARCH_PREVIEW_KERNELS gate.)
  return p.aL != nullptr && p.y != nullptr && p.cL != nullptr && p.o.data != nullptr &&
         lhopper_shape_ok(p, tma::StepKernel::kLFinal, l_final_hopper_by_default(p), kLRows);
}

Status l_step_final_hopper(const MonarchParams& p, cudaStream_t s) {
  return dispatch_dtype_dim(p.dtype, p.D, [&](auto tt, auto dd) -> Status {
    using T = typename decltype(tt)::type;
    constexpr int D = decltype(dd)::value;
    return launch<T, D>(p, s);
  });
}

}  // namespace cuda
}  // namespace monarch
