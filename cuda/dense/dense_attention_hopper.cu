// dense_attention_hopper.cu — dense softmax attention forward for sm_90a (Hopper): the same results
// as dense_attention.cu (masks, LSE, online entropy, NaN propagation: dense_softmax.cuh) with the
// matrix products on wgmma and the tiles moved by the copy engine.
//
// CTA: one producer and NC consumer warpgroups (warp specialisation; NC = 2, or 3 for A/B runs);
// persistent (one CTA per SM looping over q-blocks, so one item's epilogue overlaps the loads of the
// next).
//   producer (warpgroup 0, one thread): bulk tensor copies (TMA) of the item's Q block, then K and V
//     tiles of kBN keys into a kStages-deep ring; each slot (and Q) has a "full" mbarrier (completed
//     by the copy's byte count) and an "empty" one (completed when every consumer is done with it).
//     K and V of a tile have separate barriers, so the next K lands while V is in use.
//   consumers (warpgroups 1..NC): 64 query rows each. Per key tile t: issue S_t = Q·K_tᵀ (wgmma, both
//     operands in shared memory) and O += P_{t−1}·V_{t−1} (wgmma, P from registers, V MN-major in
//     shared memory), run the masked streaming softmax of S_t while the second product is in flight
//     (FlashAttention-3's intra-warpgroup overlap), then rescale O and form P_t (the FlashAttention-2
//     C→A fragment trick: the wgmma accumulator layout is the mma.m16n8k16 one per warp). The
//     consumers take turns issuing (ping-pong over named barriers).
// The producer gives its registers to the consumers (setmaxnreg): 24 / 240 per thread with two
// consumers, 32 / 160 with three (which is why three take 64-key tiles).
// Shared memory: Q [D/64][kBM][64], K and V [kStages][D/64][kBN][64], all 128-byte swizzled
// (hopper.cuh), plus the mbarriers.
// Keys-out variant (kKeysOut, dense_hopper_keys_out): the K tile in shared memory also serves as a
// second value matrix, oKeys = softmax(Q·Kᵀ)·K next to o = softmax(Q·Kᵀ)·V, from one softmax. That
// is VMonarch's first R-step (aL = R·K and y = R·V with the entropy, r_step_frames_dense.cuh), which
// otherwise takes two dense passes. K slots are released after both products of their tile; at head
// dim 128 the tiles hold 64 keys (two fp32 accumulators fit the 240 registers next to S and P).
// Key-bias variant (kBias, dense_hopper_biased): every logit of key n also gets −bias[n] (natural units,
// +INF masks the key), the biases of a tile read into registers while S is in flight. That is the final
// L-step of a one-tile problem (queries against the candidates aL with the bias cL, values y:
// l_step_final_dense.cuh).
#include <monarch/monarch_cuda.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "../common/hopper.cuh"
#include "../common/mma_utils.cuh"
#include "../common/online_softmax.cuh"  // rescale_rows, zero_acc
#include "../common/tma_map.h"
#include "../common/wgmma.cuh"
#include "dense_hopper.h"
#include "dense_softmax.cuh"

namespace monarch {
namespace cuda {
namespace {

using namespace detail;
using namespace hopper;

// CTA shape: NC consumer warpgroups of 64 query rows each (2, or 3 at head dim 64, where the
// consumers' registers fit 160 per thread and a third warpgroup hides the softmax latency) and one
// producer warpgroup.
template <int NC>
struct DenseShape {
  static constexpr int kBM = 64 * NC;  // query rows per CTA
  static constexpr int kThreads = 128 * (NC + 1);
  static constexpr int kConsumerThreads = 128 * NC;
  static constexpr int kProducerRegs = NC == 2 ? 24 : 32;
  static constexpr int kConsumerRegs = NC == 2 ? 240 : 160;
};

// Keys per tile: 128 (160 and 192 at head dim 64 were measured no faster, and 192 spills:
// benchmarks/notes/kernel-dense-hopper.md); the keys-out variant at head dim 128 takes 64, and so do
// three consumers (S, P and O of a 128-key tile do not fit 160 registers; at head dim 64 they take
// 96-key tiles); so does the key-bias variant at head dim 128 (its biases' registers spill a 128-key
// tile: 88 bytes in ptxas -v). Ring depth: what fits
// 227 KB of shared memory.
template <int D, bool kNarrow, int NC>  // kNarrow: keys-out or key-bias variant
constexpr int hopper_bn() {
  return NC == 3 && D == 64 ? 96 : (kNarrow && D == 128) || NC == 3 ? 64 : 128;
}
template <int D, int kBN>
constexpr int hopper_stages() {
  return D == 128 && kBN == 128 ? 2 : D == 64 && kBN == 96 ? 6 : 4;  // (64, 96): three consumers
}

template <int D, int kBN, int NC>
struct HopperSmem {
  static constexpr int kAtoms = D / 64;             // 64-column swizzle atoms per row
  static constexpr int kQBytes = DenseShape<NC>::kBM * D * 2;
  static constexpr int kTileBytes = kBN * D * 2;    // one K or one V tile
  static constexpr int kStages = hopper_stages<D, kBN>();
  static constexpr int kBarOffset = kQBytes + 2 * kStages * kTileBytes;
  static constexpr int kBars = 2 + 4 * kStages;     // Q full/empty; K full/empty, V full/empty per slot
  static constexpr size_t kBytes = size_t(kBarOffset) + kBars * 8 + 1024;  // + alignment slack
};

// The CTA's q-block / head / batch for work item w (q-blocks fastest, so the CTAs running at once
// share a head's K and V in L2). Block-causal: the last q-blocks see the most keys and go first.
struct WorkTile {
  int qb, h, b;
};
__device__ __forceinline__ WorkTile work_tile(int w, int nQB, int H, bool causal) {
  WorkTile t;
  t.qb = w % nQB;
  const int r = w / nQB;
  t.h = r % H;
  t.b = r / H;
  if (causal) t.qb = nQB - 1 - t.qb;
  return t;
}
// Keys q-block qb may see (kEnd) and keys every row of it sees (kAll); as dense_attention.cu.
template <int kBM>
__device__ __forceinline__ void key_range(const DenseParams& p, int qb, int& kEnd, int& kAll) {
  // (kBM-row q-blocks; the key tile size does not enter)
  kEnd = kAll = p.Nk;
  if (p.causalChunk > 0) {
    const int64_t C = p.causalChunk, row0 = int64_t(qb) * kBM;
    const int64_t last = int64_t(p.q0) + min(int64_t(p.Nq), row0 + kBM) - 1;
    kEnd = int(min(int64_t(p.Nk), (last / C + 1) * C));
    kAll = int(min(int64_t(p.Nk), ((int64_t(p.q0) + row0) / C + 1) * C));
  }
}

// Persistent: gridDim.x CTAs loop over the nQB·H·B work items (w = blockIdx.x + i·gridDim.x), so a
// CTA's epilogue overlaps the producer's loads for its next item. The K/V ring position `it` runs on
// across items, the same count in producer and consumers.
template <typename T, int D, bool kEntropy, bool kOverlap, bool kKeysOut, int NC, bool kBias>
__global__ void __launch_bounds__(DenseShape<NC>::kThreads, 1)
    dense_attention_hopper_kernel(const __grid_constant__ CUtensorMap tmQ, const __grid_constant__ CUtensorMap tmK,
                                  const __grid_constant__ CUtensorMap tmV, DenseParams p, DenseKeysOut ko,
                                  DenseKeyBias kb) {
  static_assert(!(kBias && (kKeysOut || kEntropy)), "the key-bias variant has neither second outputs nor entropy");
#if MONARCH_SM90A
  constexpr int kBN = hopper_bn<D, kKeysOut || kBias, NC>();
  using L = HopperSmem<D, kBN, NC>;
  using Shape = DenseShape<NC>;
  constexpr int kBM = Shape::kBM;
  constexpr int kConsumers = Shape::kConsumerThreads;  // arrivals that release a slot
  constexpr int kStages = L::kStages;
  extern __shared__ unsigned char smem_raw[];
  unsigned char* base = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  T* sQ = reinterpret_cast<T*>(base);
  T* sK = reinterpret_cast<T*>(base + L::kQBytes);
  T* sV = reinterpret_cast<T*>(base + L::kQBytes + kStages * L::kTileBytes);
  uint64_t* bars = reinterpret_cast<uint64_t*>(base + L::kBarOffset);
  uint64_t* fullQ = bars;
  uint64_t* emptyQ = bars + 1;
  uint64_t* fullK = bars + 2;
  uint64_t* emptyK = fullK + kStages;
  uint64_t* fullV = emptyK + kStages;
  uint64_t* emptyV = fullV + kStages;

  const int wg = threadIdx.x / 128;
  const int nQB = (p.Nq + kBM - 1) / kBM;
  const int nWork = nQB * p.H * p.B;
  const bool causal = p.causalChunk > 0;

  if (threadIdx.x == 0) {
    mbar_init(fullQ, 1);
    mbar_init(emptyQ, kConsumers);
    for (int s = 0; s < kStages; ++s) {
      mbar_init(fullK + s, 1);
      mbar_init(fullV + s, 1);
      mbar_init(emptyK + s, kConsumers);
      mbar_init(emptyV + s, kConsumers);
    }
    mbar_fence_init();
  }
  __syncthreads();

  if (wg == 0) {  // ---- producer ----
    regs_dealloc<Shape::kProducerRegs>();
    if (threadIdx.x == 0) {
      tma_prefetch_map(&tmQ);
      tma_prefetch_map(&tmK);
      tma_prefetch_map(&tmV);
      int it = 0, n = 0;
      for (int w = blockIdx.x; w < nWork; w += gridDim.x, ++n) {
        const WorkTile wt = work_tile(w, nQB, p.H, causal);
        int kEnd, kAll;
        key_range<kBM>(p, wt.qb, kEnd, kAll);
        const int nTiles = (kEnd + kBN - 1) / kBN;
        mbar_wait(emptyQ, (n & 1) ^ 1);
        mbar_arrive_expect_tx(fullQ, L::kQBytes);
#pragma unroll
        for (int a = 0; a < L::kAtoms; ++a) tma_load_4d(sQ + a * kBM * 64, &tmQ, fullQ, a * 64, wt.qb * kBM, wt.h, wt.b);
        for (int t = 0; t < nTiles; ++t, ++it) {
          const int s = it % kStages;
          const uint32_t ph = (it / kStages) & 1;
          mbar_wait(emptyK + s, ph ^ 1);
          mbar_arrive_expect_tx(fullK + s, L::kTileBytes);
#pragma unroll
          for (int a = 0; a < L::kAtoms; ++a)
            tma_load_4d(sK + (s * L::kAtoms + a) * kBN * 64, &tmK, fullK + s, a * 64, t * kBN, wt.h, wt.b);
          mbar_wait(emptyV + s, ph ^ 1);
          mbar_arrive_expect_tx(fullV + s, L::kTileBytes);
#pragma unroll
          for (int a = 0; a < L::kAtoms; ++a)
            tma_load_4d(sV + (s * L::kAtoms + a) * kBN * 64, &tmV, fullV + s, a * 64, t * kBN, wt.h, wt.b);
        }
      }
    }
    return;
  }

  // ---- consumers ----
  // Per key tile t the warpgroup issues S_t = Q·K_tᵀ and O += P_{t−1}·V_{t−1} back to back, runs the
  // softmax of S_t while the second product is in flight, and only then rescales O and overwrites P
  // (the intra-warpgroup overlap of FlashAttention-3).
  regs_alloc<Shape::kConsumerRegs>();
  const int c = wg - 1;  // rows 64c + [0, 64) of each q-block
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  const int g = lane / 4, qd = lane % 4;
  const float scale2 = p.scale * kLog2e;
  const uint32_t qAddr = smem_addr(sQ) + c * 64 * 128;  // this warpgroup's 64 rows of atom 0
  const uint32_t kAddr = smem_addr(sK), vAddr = smem_addr(sV);

  float O[D / 8][4];
  float O2[kKeysOut ? D / 8 : 1][4];  // keys-out: P·K
  float S[kBN / 8][4];
  uint32_t pa[kBN / 16][4];
  float bv[kBias ? kBN / 8 : 1][2];  // key-bias variant: this thread's key columns' biases, base 2
#pragma unroll
  for (int n = 0; n < kBN / 8; ++n) S[n][0] = S[n][1] = S[n][2] = S[n][3] = 0.f;

  auto issue_s = [&](int s) {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const uint32_t atom = kk / 4, off = (kk % 4) * 32;
      const uint64_t da = desc_kmajor(qAddr + atom * kBM * 128 + off);
      const uint64_t db = desc_kmajor(kAddr + (s * L::kAtoms + atom) * kBN * 128 + off);
      Wgmma<T, kBN>::ss(S, da, db, kk > 0 ? 1 : 0);
    }
    wgmma_commit();
  };
  auto issue_pv = [&](int s) {
#pragma unroll
    for (int kt = 0; kt < kBN / 16; ++kt)
      Wgmma<T, D>::rs(O, pa[kt], desc_mnmajor(vAddr + s * L::kTileBytes + kt * 16 * 128, kBN * 128), 1);
    if constexpr (kKeysOut) {
#pragma unroll
      for (int kt = 0; kt < kBN / 16; ++kt)
        Wgmma<T, D>::rs(O2, pa[kt], desc_mnmajor(kAddr + s * L::kTileBytes + kt * 16 * 128, kBN * 128), 1);
    }
    wgmma_commit();
  };
  // K slot s: released after S (plain attention) or after both products (keys-out).
  auto release_k_after_s = [&](int s) {
    if constexpr (!kKeysOut) mbar_arrive(emptyK + s);
  };
  auto release_after_pv = [&](int s) {
    mbar_arrive(emptyV + s);
    if constexpr (kKeysOut) mbar_arrive(emptyK + s);
  };

  // Ping-pong turns go round the consumers: c waits on barrier 1 + c, then hands the turn to the
  // next consumer (barrier 1 + (c + 1) % NC); the last one opens the first turn.
  const int nextTurn = 1 + (c + 1) % NC;
  if (kOverlap && c == NC - 1) named_arrive(1, 256);  // consumer 0 issues first
  int it = 0, n = 0;
  for (int w = blockIdx.x; w < nWork; w += gridDim.x, ++n) {
    const WorkTile wt = work_tile(w, nQB, p.H, causal);
    const int row0 = wt.qb * kBM;
    const int wrow0 = row0 + c * 64 + warp * 16;  // this warp's 16 rows
    int kEnd, kAll;
    key_range<kBM>(p, wt.qb, kEnd, kAll);
    const int nTiles = (kEnd + kBN - 1) / kBN;
    const uint8_t* kv = p.keyValid ? p.keyValid + int64_t(wt.b) * p.Nk : nullptr;
    int lim[2] = {p.Nk, p.Nk};
    if (causal) {
      const int64_t C = p.causalChunk;
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int64_t pos = int64_t(p.q0) + wrow0 + g + 8 * hh;
        lim[hh] = int(min(int64_t(p.Nk), (pos / C + 1) * C));
      }
    }
    if (kv != nullptr || !(scale2 > 0.f) || kBias) kAll = 0;
    const float* brow = kBias ? kb.bias + wt.b * kb.sB + wt.h * kb.sH : nullptr;
    // Key-bias variant: tile t's biases into bv (issued while S_t is in flight; keys past Nk read none).
    auto load_bias = [&](int t) {
      if constexpr (kBias) {
#pragma unroll
        for (int n = 0; n < kBN / 8; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int col = t * kBN + n * 8 + 2 * qd + e;
            bv[n][e] = col < p.Nk ? __ldg(brow + col) * kLog2e : 0.f;
          }
      }
    };

    // Softmax of S (tile t) in place: returns whether O must be rescaled by alpha.
    LazySoftmax<kBN, kEntropy> sm;
    sm.init();
    auto softmax = [&](int t, float (&alpha)[2]) -> bool {
      if ((t + 1) * kBN > kAll) {  // masked tile: key tail, causal edge, keyValid, scale2 ≤ 0 or a bias
        mask_scale_tile<kBN, kBias>(S, t * kBN, qd, lim, kv, scale2, &bv[0][0]);
        return sm.template update<false>(S, scale2, alpha);
      }
      return sm.template update<true>(S, scale2, alpha);
    };

    zero_acc<D>(O);
    if constexpr (kKeysOut) zero_acc<D>(O2);
    mbar_wait(fullQ, n & 1);
    if constexpr (kOverlap) {
      // Ping-pong: the consumer warpgroups take turns issuing their products (named barrier 1 + c is
      // "c may issue"), so one's softmax runs while another's products use the tensor cores.
      {  // tile 0: S only
        const int s = it % kStages;
        mbar_wait(fullK + s, (it / kStages) & 1);
        named_sync(1 + c, 256);
        wgmma_fence();
        issue_s(s);
        named_arrive(nextTurn, 256);
        load_bias(0);
        wgmma_wait<0>();
        fence_regs(S);
        if (nTiles == 1) mbar_arrive(emptyQ);
        release_k_after_s(s);
        float alpha[2];
        softmax(0, alpha);  // O is still zero: nothing to rescale
        c_to_a_frags<kBN, T>(pa, S);
      }
      for (int t = 1; t < nTiles; ++t) {
        const int sc = (it + t) % kStages, sp = (it + t - 1) % kStages;
        mbar_wait(fullK + sc, ((it + t) / kStages) & 1);
        mbar_wait(fullV + sp, ((it + t - 1) / kStages) & 1);
        named_sync(1 + c, 256);
        wgmma_fence();
        issue_s(sc);
        issue_pv(sp);
        named_arrive(nextTurn, 256);
        load_bias(t);
        wgmma_wait<1>();  // S_t done, P_{t−1}·V_{t−1} may still run
        fence_regs(S);
        if (t == nTiles - 1) mbar_arrive(emptyQ);
        release_k_after_s(sc);
        float alpha[2];
        const bool moved = softmax(t, alpha);
        wgmma_wait<0>();
        fence_regs(O);
        if constexpr (kKeysOut) fence_regs(O2);
        release_after_pv(sp);
        if (moved) {
          rescale_rows<D>(O, alpha);
          if constexpr (kKeysOut) rescale_rows<D>(O2, alpha);
        }
        c_to_a_frags<kBN, T>(pa, S);
      }
      {  // last P·V
        const int sp = (it + nTiles - 1) % kStages;
        mbar_wait(fullV + sp, ((it + nTiles - 1) / kStages) & 1);
        named_sync(1 + c, 256);
        wgmma_fence();
        issue_pv(sp);
        named_arrive(nextTurn, 256);
        wgmma_wait<0>();
        fence_regs(O);
        if constexpr (kKeysOut) fence_regs(O2);
        release_after_pv(sp);
      }
    } else {
      // Plain: per tile S, softmax, P·V in sequence; the two warpgroups interleave on their own.
      for (int t = 0; t < nTiles; ++t) {
        const int s = (it + t) % kStages;
        const uint32_t ph = ((it + t) / kStages) & 1;
        mbar_wait(fullK + s, ph);
        wgmma_fence();
        issue_s(s);
        load_bias(t);
        wgmma_wait<0>();
        fence_regs(S);
        if (t == nTiles - 1) mbar_arrive(emptyQ);
        release_k_after_s(s);
        float alpha[2];
        if (softmax(t, alpha)) {
          rescale_rows<D>(O, alpha);
          if constexpr (kKeysOut) rescale_rows<D>(O2, alpha);
        }
        c_to_a_frags<kBN, T>(pa, S);
        mbar_wait(fullV + s, ph);
        wgmma_fence();
        issue_pv(s);
        wgmma_wait<0>();
        fence_regs(O);
        if constexpr (kKeysOut) fence_regs(O2);
        release_after_pv(s);
      }
    }
    it += nTiles;

    T* og = static_cast<T*>(p.o.data) + wt.b * p.o.sB + wt.h * p.o.sH;
    sm.finalize();
    float inv[2];
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) inv[hh] = sm.l[hh] > 0.f ? 1.f / sm.l[hh] : 0.f;
    store_rows<D, T>(O, inv, lane, [&](int r) -> T* {
      return wrow0 + r < p.Nq ? og + int64_t(wrow0 + r) * p.o.sS : nullptr;
    });
    if constexpr (kKeysOut) {
      T* okg = static_cast<T*>(ko.o.data) + wt.b * ko.o.sB + wt.h * ko.o.sH;
      store_rows<D, T>(O2, inv, lane, [&](int r) -> T* {
        return wrow0 + r < p.Nq ? okg + int64_t(wrow0 + r) * ko.o.sS : nullptr;
      });
      if constexpr (kEntropy) {
        if (ko.negEntropy && qd == 0) {
#pragma unroll
          for (int hh = 0; hh < 2; ++hh) {
            const int row = wrow0 + g + 8 * hh;
            if (row >= p.Nq) continue;
            const float ne = sm.neg_entropy(hh);  // Σ p log p: −max(0, entropy) as store_row_stats, NaN kept
            ko.negEntropy[wt.b * ko.sB + wt.h * ko.sH + int64_t(row) * ko.sRow] = ne != ne ? ne : fminf(0.f, ne);
          }
        }
      }
    }
    store_row_stats(sm, p, wt.b, wt.h, wrow0, g, qd);
  }
  // Ping-pong: the last consumer issued last and signalled barrier 1 once more; consume it.
  if (kOverlap && c == 0) named_sync(1, 256);
#else
  static_assert(HopperSmem<D, 128, NC>::kAtoms >= 1, "head dim is a multiple of 64");
#endif
}

// Schedule knobs for A/B measurement (MONARCH_DENSE_HOPPER = "plain" | "overlap",
// MONARCH_DENSE_PERSIST = "0" | "1" and MONARCH_DENSE_CONSUMERS = "2" | "3"; unset: the defaults
// below).
struct HopperKnobs {
  int overlap = -1, persist = -1, consumers = -1;  // −1: default
};
const HopperKnobs& knobs() {
  static const HopperKnobs k = [] {
    HopperKnobs r;
    if (const char* e = std::getenv("MONARCH_DENSE_HOPPER")) r.overlap = std::string(e) == "overlap" ? 1 : std::string(e) == "plain" ? 0 : -1;
    if (const char* e = std::getenv("MONARCH_DENSE_PERSIST")) r.persist = std::string(e) == "1" ? 1 : std::string(e) == "0" ? 0 : -1;
    if (const char* e = std::getenv("MONARCH_DENSE_CONSUMERS")) r.consumers = std::string(e) == "3" ? 3 : std::string(e) == "2" ? 2 : -1;
    return r;
  }();
  return k;
}

// Consumer warpgroups: three at head dim 64, two at 128 (MONARCH_DENSE_CONSUMERS=2|3 forces either).
// Three take 192 query rows per CTA with 96-key tiles at head dim 64 (64-key tiles at 128), so that S,
// P and O fit 160 registers per thread. On the H200 three were 3% faster at seq-16k d64 in session 8
// (392 against 379 TFLOP/s) and 9% in session 9 (393 against 356–361), and slower at head dim 128 (521
// against 554 at 480p): benchmarks/results/h200-2026-12-03-s9/README.md. The full checker and memcheck
// pass with three forced. The keys-out variant always takes two.
template <int D, bool kKeysOut>
int consumers_for() {
  if (kKeysOut) return 2;
  const int k = knobs().consumers;
  return k > 0 ? k : D == 64 ? 3 : 2;
}

template <typename T, int D, bool kEntropy, bool kOverlap, bool kKeysOut, int NC, bool kBias = false>
Status launch_variant(const DenseParams& p, const DenseKeysOut& oKeys, cudaStream_t s, bool persist,
                      const DenseKeyBias& kb = DenseKeyBias()) {
  using Shape = DenseShape<NC>;
  constexpr int kBN = hopper_bn<D, kKeysOut || kBias, NC>();
  CUtensorMap mq, mk, mv;
  Status st = tma::encode_rows(&mq, p.q, p.dtype, p.B, p.Nq, p.H, D, Shape::kBM);
  if (st.ok) st = tma::encode_rows(&mk, p.k, p.dtype, p.B, p.Nk, p.H, D, kBN);
  if (st.ok) st = tma::encode_rows(&mv, p.v, p.dtype, p.B, p.Nk, p.H, D, kBN);
  if (!st.ok) return Status::Error("dense_attention_hopper_kernel: " + st.message);
  auto kernel = dense_attention_hopper_kernel<T, D, kEntropy, kOverlap, kKeysOut, NC, kBias>;
  const size_t smem = HopperSmem<D, kBN, NC>::kBytes;
  st = prepare_smem(kernel, smem, "dense_attention_hopper_kernel");
  if (!st.ok) return st;
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
    return launch_status("dense_attention_hopper_kernel");
  const int64_t work = int64_t((p.Nq + Shape::kBM - 1) / Shape::kBM) * p.H * p.B;
  if (work > INT32_MAX) return Status::Error("dense_attention_hopper_kernel: more than 2^31 q-blocks");
  // Persistent: one CTA per SM (the epilogue and the next item's Q load overlap: +20% at 512 keys);
  // otherwise one CTA per item, which lets the hardware balance uneven (block-causal) items.
  // (MONARCH_HOPPER_MAX_GRID caps the persistent grid, a test knob: tma_map.h.)
  const int64_t grid = persist ? tma::hopper_grid(work, sms) : work;
  kernel<<<unsigned(grid), Shape::kThreads, smem, s>>>(mq, mk, mv, p, oKeys, kb);
  return launch_status("dense_attention_hopper_kernel");
}

template <typename T, int D, bool kEntropy, bool kOverlap, bool kKeysOut>
Status launch_consumers(const DenseParams& p, const DenseKeysOut& oKeys, cudaStream_t s, bool persist) {
  if constexpr (!kKeysOut) {
    if (consumers_for<D, kKeysOut>() == 3) return launch_variant<T, D, kEntropy, kOverlap, kKeysOut, 3>(p, oKeys, s, persist);
  }
  return launch_variant<T, D, kEntropy, kOverlap, kKeysOut, 2>(p, oKeys, s, persist);
}

template <typename T, int D, bool kEntropy, bool kKeysOut>
Status launch(const DenseParams& p, const DenseKeysOut& oKeys, cudaStream_t s) {
  const HopperKnobs& k = knobs();
  // Defaults from the H200 A/B (benchmarks/notes/kernel-dense-hopper.md): the overlapped schedule
  // everywhere; persistent unless block-causal (uneven items balance better one CTA per item).
  const bool persist = k.persist >= 0 ? k.persist == 1 : p.causalChunk <= 0;
  const bool overlap = k.overlap >= 0 ? k.overlap == 1 : true;
  return overlap ? launch_consumers<T, D, kEntropy, true, kKeysOut>(p, oKeys, s, persist)
                 : launch_consumers<T, D, kEntropy, false, kKeysOut>(p, oKeys, s, persist);
}

}  // namespace

bool dense_hopper_applies(const DenseParams& p) {
  if ((p.dtype != kF16 && p.dtype != kBF16) || (p.D != 64 && p.D != 128)) return false;
  if (p.Nk < 1 || p.Nq < 1) return false;
  static const int mode = [] {
    const char* e = std::getenv("MONARCH_DENSE_KERNEL");  // "mma": the sm_80 kernel everywhere (A/B runs)
    return e && std::string(e) == "mma" ? 0 : 1;
  }();
  return mode != 0 && tma::hopper_kernels_usable();
}

Status dense_hopper(const DenseParams& p, cudaStream_t s) {
  const bool entropy = p.entropy != nullptr;
  const DenseKeysOut none;
  return dispatch_dtype_dim(p.dtype, p.D, [&](auto tt, auto dd) -> Status {
    using T = typename decltype(tt)::type;
    constexpr int D = decltype(dd)::value;
    return entropy ? launch<T, D, true, false>(p, none, s) : launch<T, D, false, false>(p, none, s);
  });
}

Status dense_hopper_biased(const DenseParams& p, const DenseKeyBias& kb, cudaStream_t s) {
  if (kb.bias == nullptr || p.lse != nullptr || p.entropy != nullptr)
    return Status::Error("dense_hopper_biased: needs a key bias and no lse / entropy outputs");
  const DenseKeysOut none;
  const bool persist = p.causalChunk <= 0;
  return dispatch_dtype_dim(p.dtype, p.D, [&](auto tt, auto dd) -> Status {
    using T = typename decltype(tt)::type;
    constexpr int D = decltype(dd)::value;
    return launch_variant<T, D, false, true, false, 2, true>(p, none, s, persist, kb);
  });
}

Status dense_hopper_keys_out(const DenseParams& p, const DenseKeysOut& ko, cudaStream_t s) {
  if (ko.o.data == nullptr || p.lse != nullptr || p.entropy != nullptr)
    return Status::Error("dense_hopper_keys_out: needs a keys output and no lse / entropy outputs");
  const bool entropy = ko.negEntropy != nullptr;
  return dispatch_dtype_dim(p.dtype, p.D, [&](auto tt, auto dd) -> Status {
    using T = typename decltype(tt)::type;
    constexpr int D = decltype(dd)::value;
    return entropy ? launch<T, D, true, true>(p, ko, s) : launch<T, D, false, true>(p, ko, s);
  });
}

}  // namespace cuda
}  // namespace monarch
