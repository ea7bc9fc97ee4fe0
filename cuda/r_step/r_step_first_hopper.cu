// r_step_first_hopper.cu — the first R-step (L = I, docs/ALGORITHMS.md §A.2, §C.3) for key rows of
// 33..80 tokens on sm_90a: MonarchRT's tiled layouts (480p: b2 = 52, 720p: 80), with the same results as
// r_step_rowwise_kernel (masks, causal pairs, entropy, NaN propagation, empty rows). Key rows of 65..80
// tokens ("wide") take 80-key tiles (S on wgmma m64n80) and queries in two kinds of consumer unit: a
// full unit holds columns j < 64 of one query tile; a packed unit holds columns 64..79 of four query
// tiles, one per warp (16-row boxes), which share the key row (f, k) — so the 16 columns past 64 cost a
// quarter of a unit instead of a whole one.
//
// Problem: for every (b, h, query tile a, key row k) and every allowed key tile f, the b2 × b2
// attention of the tokens of row k of tile a (queries j) with the tokens of row k of tile f (keys l),
//   aL[a,f,j,k] = Σ_l R·k[f,k,l],  y[a,f,j,k] = Σ_l R·v[f,k,l] (last step),  cL = Σ_l R log R,
// each key tile its own softmax (no state carried between tiles).
//
// CTA: NC + 1 warpgroups (warp specialisation, NC = 2 or 3 consumers: RfhShape), persistent over work
// items (b, h, k, group of NC query tiles a = NC·ap + c); each consumer warpgroup takes one query tile
// and all of them share every key tile (the tiles' rows k see the same key rows (f, k)).
//   producer (warpgroup 0, one thread): bulk tensor copies (TMA) of each consumer's 64-row Q box,
//     then per key tile f the K (and V) boxes into a 4-deep (NC = 3: 3-deep) ring with full/empty
//     mbarriers. The boxes
//     come from a 5-D map {D, b2, rows, H, B} (tma_map.h), so tokens past b2 are zero-filled by the
//     copy engine and a box never carries the next row's tokens into the products.
//   consumers (warpgroups 1..NC): per key tile S = Q·Kᵀ (wgmma m64n64, both operands in shared
//     memory), the one-pass masked softmax with entropy in registers (the wgmma accumulator layout is
//     the mma.m16n8k16 one per warp, so the mma.sync R-step's softmax helpers apply), then
//     aL = P·K and y = P·V (wgmma, P from registers, K and V MN-major in shared memory), normalised
//     and stored through each warp's 16 staging rows as 16-byte stores (store_rows_staged); with
//     three consumers as 64-column products one after the other (r_hopper_tile's kSeq).
// The producer gives its registers to the consumers (setmaxnreg 24 / 240, or 32 / 160 with three).
// On by default where three consumers are picked (the size rule below).
#include <monarch/monarch_cuda.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "../common/hopper.cuh"
#include "../common/hopper_launch.cuh"
#include "../common/wgmma.cuh"
#include "r_step_hopper.h"
#include "r_step_hopper_tile.cuh"

namespace monarch {
namespace cuda {
namespace {

using namespace detail;
using namespace hopper;

constexpr int kRows = kHopperRows;  // query columns j per consumer (one query box)

// NC consumer warpgroups (2 or 3) and a producer warpgroup (one thread issues the copies) that gives
// its registers to the consumers (setmaxnreg): 24 / 240 with two consumers, 32 / 160 with three
// (512 threads: 65,536 registers exactly). With three, the last step's two products run one after the
// other (r_hopper_tile's kSeq) so a consumer fits them in 160.
template <int NC, int RK = kRows>
struct RfhShape {
  static constexpr int kThreads = 128 * (NC + 1);
  static constexpr int kRing = NC == 2 && RK == kRows ? 4 : 3;  // key tiles in flight (three: what fits 227 KB)
  static constexpr int kProducerRegs = NC == 2 ? 24 : 32;
  static constexpr int kConsumerRegs = NC == 2 ? 240 : 160;
  static constexpr bool kSeq = NC == 3;
  static constexpr int kTmaBufs = 2;  // store buffers per consumer warp (kTma)
};

template <int D, bool kLast, int NC, bool kTma, int RK = kRows>
struct RfhSmem {
  static constexpr int kRing = RfhShape<NC, RK>::kRing;
  static constexpr int kAtoms = D / 64;
  static constexpr int kTileBytes = kRows * D * 2;  // one Q box (a consumer's queries)
  static constexpr int kKeyBytes = RK * D * 2;      // one K or V tile
  static constexpr int kKOff = NC * kTileBytes;     // after the consumers' Q boxes
  static constexpr int kVOff = kKOff + kRing * kKeyBytes;
  static constexpr int kStageOff = kVOff + (kLast ? kRing * kKeyBytes : 0);
  // 16 rows per consumer warp: staging rows, or kTma's store buffers (1024-byte aligned: kStageOff is)
  static constexpr int kStageBytes = kTma ? NC * 4 * RfhShape<NC>::kTmaBufs * kStoreBufBytes : NC * 4 * 16 * Smem<D>::kLd * 2;
  static constexpr int kBarOff = kStageOff + kStageBytes;
  static constexpr int kBars = 2 * NC + 4 * kRing;  // Q full/empty per consumer; K, V full/empty per slot
  static constexpr size_t kBytes = size_t(kBarOff) + kBars * 8 + 1024;  // + alignment slack
};

struct RfhItem {
  int ap, k, h, b;
};
// Query units (full and packed): r_hopper_units / r_hopper_unit_tile (r_step_hopper_tile.cuh).
// The allowed key-tile prefix of unit u: the longest of its tiles'.
__device__ __forceinline__ int rfh_unit_tiles(const MonarchParams& p, int u) {
  if (u < p.Aq) return allowed_key_tiles(p, u);
  int n = 0;
  for (int w = 0; w < 4; ++w) {
    const int a = r_hopper_unit_tile(u, w, p.Aq);
    if (a < p.Aq) n = max(n, allowed_key_tiles(p, a));
  }
  return n;
}
// Work item w: groups of NC query units (ap) fastest, then key rows, heads, batch rows (CTAs running at once share
// the key rows (f, k) of a few k in L2).
__device__ __forceinline__ RfhItem rfh_item(int64_t w, int nAp, int b1, int H) {
  RfhItem t;
  t.ap = int(w % nAp);
  w /= nAp;
  t.k = int(w % b1);
  w /= b1;
  t.h = int(w % H);
  t.b = int(w / H);
  return t;
}
// Key tiles the item loads: the longest allowed prefix of its NC query units' tiles.
template <int NC>
__device__ __forceinline__ int rfh_tiles(const MonarchParams& p, int ap, int nUnits) {
  int n = 0;
#pragma unroll
  for (int c = 0; c < NC; ++c)
    if (NC * ap + c < nUnits) n = max(n, rfh_unit_tiles(p, NC * ap + c));
  return n;
}

// kTma (three consumers only): the outputs go out as bulk tensor stores through tmAL / tmY (4-D maps
// {D, b1, b2, pairs}, r_hopper_tile's RStoreTo), else through the staging rows.
// RK: keys per tile (64; 80 for the wide rows, whose queries take two boxes per tile row).
template <typename T, int D, bool kLast, int NC, bool kTma, int RK>
__global__ void __launch_bounds__(RfhShape<NC, RK>::kThreads, 1)
    r_step_first_hopper_kernel(const __grid_constant__ CUtensorMap tmQ, const __grid_constant__ CUtensorMap tmQ16,
                               const __grid_constant__ CUtensorMap tmK,
                               const __grid_constant__ CUtensorMap tmV, const __grid_constant__ CUtensorMap tmAL,
                               const __grid_constant__ CUtensorMap tmY, MonarchParams p, int pipe) {
#if MONARCH_SM90A
  static_assert(!kTma || RfhShape<NC, RK>::kSeq, "TMA stores serve the 64-column parts");
  using L = RfhSmem<D, kLast, NC, kTma, RK>;
  constexpr int kRing = L::kRing;
  constexpr bool kSeq = RfhShape<NC, RK>::kSeq;
  extern __shared__ unsigned char smem_raw[];
  unsigned char* base = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  T* sQ = reinterpret_cast<T*>(base);
  T* sK = reinterpret_cast<T*>(base + L::kKOff);
  T* sV = reinterpret_cast<T*>(base + L::kVOff);
  T* sStage = reinterpret_cast<T*>(base + L::kStageOff);
  uint64_t* bars = reinterpret_cast<uint64_t*>(base + L::kBarOff);
  uint64_t* fullQ = bars;        // [NC]
  uint64_t* emptyQ = bars + NC;  // [NC]
  uint64_t* fullK = bars + 2 * NC;
  uint64_t* emptyK = fullK + kRing;
  uint64_t* fullV = emptyK + kRing;
  uint64_t* emptyV = fullV + kRing;

  const int wg = threadIdx.x / 128;
  constexpr bool kWide = RK > kRows;
  const int nUnits = r_hopper_units<kWide>(p.Aq);
  const int nAp = (nUnits + NC - 1) / NC;
  const int64_t nWork = int64_t(nAp) * p.b1 * p.H * p.B;

  if (threadIdx.x == 0) {
    for (int c = 0; c < NC; ++c) {
      mbar_init(fullQ + c, 1);
      mbar_init(emptyQ + c, 128);
    }
    for (int s = 0; s < kRing; ++s) {
      mbar_init(fullK + s, 1);
      mbar_init(fullV + s, 1);
      mbar_init(emptyK + s, 128 * NC);
      mbar_init(emptyV + s, 128 * NC);
    }
    mbar_fence_init();
  }
  __syncthreads();

  if (wg == 0) {  // ---- producer ----
    regs_dealloc<RfhShape<NC, RK>::kProducerRegs>();
    if (threadIdx.x == 0) {
      tma_prefetch_map(&tmQ);
      if (kWide) tma_prefetch_map(&tmQ16);
      tma_prefetch_map(&tmK);
      if (kLast) tma_prefetch_map(&tmV);
      uint64_t it = 0;  // ring uses (64-bit: never wraps)
      int nq[NC] = {};
      for (int64_t w = blockIdx.x; w < nWork; w += gridDim.x) {
        const RfhItem t = rfh_item(w, nAp, p.b1, p.H);
        const int nTiles = rfh_tiles<NC>(p, t.ap, nUnits);
        for (int c = 0; c < NC; ++c) {
          const int u = NC * t.ap + c;
          if (u >= nUnits) continue;
          mbar_wait(emptyQ + c, (nq[c] & 1) ^ 1);
          mbar_arrive_expect_tx(fullQ + c, L::kTileBytes);
          if (u < p.Aq) {  // columns j < 64 of query tile u
#pragma unroll
            for (int at = 0; at < L::kAtoms; ++at)
              tma_load_5d(sQ + (c * L::kAtoms + at) * kRows * 64, &tmQ, fullQ + c, at * 64, 0, u * p.b1 + t.k, t.h, t.b);
          } else {  // packed: columns 64.. of four query tiles, 16 rows each (a missing tile loads tile Aq − 1)
            for (int qw = 0; qw < 4; ++qw) {
              const int a = min(r_hopper_unit_tile(u, qw, p.Aq), p.Aq - 1);
#pragma unroll
              for (int at = 0; at < L::kAtoms; ++at)
                tma_load_5d(sQ + (c * L::kAtoms + at) * kRows * 64 + qw * 16 * 64, &tmQ16, fullQ + c, at * 64, kRows,
                            a * p.b1 + t.k, t.h, t.b);
            }
          }
          ++nq[c];
        }
        for (int f = 0; f < nTiles; ++f, ++it) {
          const int s = it % kRing;
          const uint32_t ph = (it / kRing) & 1;
          mbar_wait(emptyK + s, ph ^ 1);
          mbar_arrive_expect_tx(fullK + s, L::kKeyBytes);
#pragma unroll
          for (int at = 0; at < L::kAtoms; ++at)
            tma_load_5d(sK + (s * L::kAtoms + at) * RK * 64, &tmK, fullK + s, at * 64, 0, f * p.b1 + t.k, t.h, t.b);
          if constexpr (kLast) {
            mbar_wait(emptyV + s, ph ^ 1);
            mbar_arrive_expect_tx(fullV + s, L::kKeyBytes);
#pragma unroll
            for (int at = 0; at < L::kAtoms; ++at)
              tma_load_5d(sV + (s * L::kAtoms + at) * RK * 64, &tmV, fullV + s, at * 64, 0, f * p.b1 + t.k, t.h, t.b);
          }
        }
      }
    }
    return;
  }

  // ---- consumers ----
  regs_alloc<RfhShape<NC, RK>::kConsumerRegs>();
  const int c = wg - 1;
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  const int b2 = p.b2;
  const float scale2[2] = {p.scale * kLog2e, p.scale * kLog2e};
  const uint32_t qAddr = smem_addr(sQ) + c * L::kTileBytes;
  const uint32_t kAddr = smem_addr(sK), vAddr = smem_addr(sV);
  T* stage = sStage + (c * 4 + warp) * 16 * Smem<D>::kLd;
  const int64_t tileToks = int64_t(p.b1) * b2;

  RHopperRegs<D, kLast, kSeq, RK> regs;
  regs.okBits = key_ok_bits<RK>(p.b2, nullptr, lane % 4);
  uint32_t nStores = 0;  // kTma: this warp's bulk stores so far
  const uint32_t storeBufs = smem_addr(sStage) + (c * 4 + warp) * RfhShape<NC, RK>::kTmaBufs * kStoreBufBytes;

  uint64_t it = 0;
  int nq = 0;
  for (int64_t w = blockIdx.x; w < nWork; w += gridDim.x) {
    const RfhItem t = rfh_item(w, nAp, p.b1, p.H);
    const int nTiles = rfh_tiles<NC>(p, t.ap, nUnits);
    const int u = NC * t.ap + c;
    const bool active = u < nUnits;
    const bool packed = active && u >= p.Aq;
    const int aw = active ? r_hopper_unit_tile(u, warp, p.Aq) : 0;  // this warp's query tile
    const bool warpOn = active && aw < p.Aq;
    const int a = warpOn ? aw : 0;
    const int wj0 = packed ? kRows : warp * 16;  // this warp's query columns j = wj0 + [0, 16)
    const int mine = active ? rfh_unit_tiles(p, u) : 0;  // this consumer's allowed prefix
    const int mineW = warpOn ? allowed_key_tiles(p, a) : 0;  // this warp's
    if (active) mbar_wait(fullQ + c, nq & 1);
    const int64_t pair0 = ((int64_t(t.b) * p.H + t.h) * p.Aq + a) * p.Fk;  // pair (b, h, a, f = 0)
    const uint8_t* kv = p.keyValid ? p.keyValid + int64_t(t.b) * p.Fk * tileToks + int64_t(t.k) * b2 : nullptr;

    for (int f = 0; f < nTiles; ++f, ++it) {
      const int s = it % kRing;
      const uint32_t ph = (it / kRing) & 1;
      mbar_wait(fullK + s, ph);
      if (f >= mine) {  // not this query tile's pair (causal), or no query tile: just free the slot
        if constexpr (kLast) mbar_wait(fullV + s, ph);  // the copy must land before the slot is refilled
        mbar_arrive(emptyK + s);
        if constexpr (kLast) mbar_arrive(emptyV + s);
        continue;
      }
      const uint8_t* kvf = kv ? kv + int64_t(f) * tileToks : nullptr;
      const int64_t colK0 = (pair0 + f) * b2 * p.b1 + t.k;  // aL / cL / y row (j = 0, k)
      const RStoreTo to{&tmAL, &tmY, storeBufs, &nStores, t.k, int(pair0 + f), pipe != 0};
      // A warp whose tile may not see f (causal, in a packed unit) or has no tile computes and stores nothing
      // (its first column is then past b2).
      const int wj = f < mineW ? wj0 : b2;
      r_hopper_tile<T, D, kLast, kSeq, kTma ? RfhShape<NC, RK>::kTmaBufs : 0, RK>(
          p, regs, qAddr, kAddr + s * L::kKeyBytes, vAddr + s * L::kKeyBytes, scale2, kvf, colK0, stage, wj, lane,
          [&] {
            if (f == mine - 1) mbar_arrive(emptyQ + c);  // the queries are no longer read
          },
          [&] {
            if constexpr (kLast) mbar_wait(fullV + s, ph);
          },
          [&] {
            mbar_arrive(emptyK + s);
            if constexpr (kLast) mbar_arrive(emptyV + s);
          },
          to);
    }
    if (active) ++nq;
  }
  if constexpr (kTma) {
    if (lane == 0) bulk_wait<0>();  // the outputs are written (and the buffers read) before the CTA ends
  }
#else
  static_assert(RfhSmem<D, kLast, NC, kTma, RK>::kAtoms >= 1, "head dim is a multiple of 64");
#endif
}

template <typename T, int D, bool kLast, int NC, bool kTma, int RK>
Status launch_nc(const MonarchParams& p, cudaStream_t s, const CUtensorMap& mq, const CUtensorMap& mq16,
                 const CUtensorMap& mk, const CUtensorMap& mv, const CUtensorMap& mal, const CUtensorMap& my) {
  const int64_t items = int64_t((r_hopper_units<(RK > kRows)>(p.Aq) + NC - 1) / NC) * p.b1 * p.H * p.B;
  return launch_persistent(r_step_first_hopper_kernel<T, D, kLast, NC, kTma, RK>, "r_step_first_hopper_kernel",
                           RfhSmem<D, kLast, NC, kTma, RK>::kBytes, RfhShape<NC, RK>::kThreads, items, p.maxCtas, s, mq, mq16, mk,
                           mv, mal, my, p, int(r_hopper_pipe()));
}
template <typename T, int D, bool kLast, int RK>
Status launch_rk(const MonarchParams& p, cudaStream_t s, int nc, bool tmaStores, const CUtensorMap& mq,
                 const CUtensorMap& mq16, const CUtensorMap& mk, const CUtensorMap& mv, const CUtensorMap& mal,
                 const CUtensorMap& my) {
  if (nc == 2) return launch_nc<T, D, kLast, 2, false, RK>(p, s, mq, mq16, mk, mv, mal, my);
  return tmaStores ? launch_nc<T, D, kLast, 3, true, RK>(p, s, mq, mq16, mk, mv, mal, my)
                   : launch_nc<T, D, kLast, 3, false, RK>(p, s, mq, mq16, mk, mv, mal, my);
}

// The count a launch uses: MONARCH_R_FIRST_CONSUMERS=2|3 (read once; an A/B switch of the shape only,
// not of where the kernel runs), else r_hopper_first_consumers.
int rfh_consumers(const MonarchParams& p) {
  static const int forced = tma::env_is("MONARCH_R_FIRST_CONSUMERS", "2")   ? 2
                            : tma::env_is("MONARCH_R_FIRST_CONSUMERS", "3") ? 3
                                                                             : 0;
  return forced ? forced : r_hopper_first_consumers(p);
}

template <typename T, int D, bool kLast>
Status launch(const MonarchParams& p, cudaStream_t s) {
  CUtensorMap mq, mk, mv;
  Status st = tma::encode_tile_rows(&mq, p.q, p.dtype, p.B, p.Aq * p.b1, p.b2, p.H, D, kRows);
  const int rk = r_hopper_key_rows(p.b2);
  CUtensorMap mq16 = mq;  // wide rows: 16-row boxes of the packed units
  if (st.ok && rk != kRows) st = tma::encode_tile_rows(&mq16, p.q, p.dtype, p.B, p.Aq * p.b1, p.b2, p.H, D, 16);
  if (st.ok) st = r_hopper_encode_keys(&mk, &mv, p, D, kLast, rk);
  const int nc = rfh_consumers(p);
  const bool tmaStores = nc == 3 && r_hopper_tma_stores();
  CUtensorMap mal = mq, my = mq;  // unused unless tmaStores
  if (st.ok && tmaStores) st = r_hopper_encode_outputs(&mal, &my, p, D, kLast);
  if (!st.ok) return Status::Error("r_step_first_hopper_kernel: " + st.message);
  if (rk == kRows) return launch_rk<T, D, kLast, kRows>(p, s, nc, tmaStores, mq, mq16, mk, mv, mal, my);
  return launch_rk<T, D, kLast, kHopperWideKeys>(p, s, nc, tmaStores, mq, mq16, mk, mv, mal, my);
}

// The size rule (MONARCH_PREVIEW_KERNELS unset), from the H200 A/B of session 7
// (benchmarks/notes/kernel-preview.md, "Size rules"): on where three consumers are picked, with or
// without y (480p T = 1 R-step 3.03 → 2.32 ms, T = 2 first step 2.36 → 1.70; the self-forcing chunk
// T = 1 0.747 → 0.632 ms with the final L-step kernel) and, since session 12, from two query tiles on
// (r_hopper_first_consumers). With two consumers (Aq = 1: seq-4k, one tile) it loses to the mma.sync kernel
// (seq-4k 0.0319 → 0.0461 ms), so it stays off there.
// The wide rows (b2 in 65..80, session 13) by the same rule: H200, 720p MonarchRT (45 × 80, Aq = 21) T = 1
// R-step 7.718 → 5.508 ms (bench T = 1 11.9 → 9.15 ms with the final L-step at b1 = 45).
bool r_first_hopper_by_default(const MonarchParams& p) { return r_hopper_first_consumers(p) == 3; }

}  // namespace

bool r_step_first_hopper_applies(const MonarchParams& p, bool last) {
  // TMA coordinates are 32-bit: the query rows per (b, h) here, the key rows in r_hopper_shape_ok (which
  // also holds the size rule and the MONARCH_PREVIEW_KERNELS gate).
  return p.aL != nullptr && p.cL != nullptr && (!last || p.y != nullptr) && int64_t(p.Aq) * p.b1 < (int64_t(1) << 31) &&
         r_hopper_shape_ok(p, tma::StepKernel::kRFirst, r_first_hopper_by_default(p), kHopperWideKeys);
}

Status r_step_first_hopper(const MonarchParams& p, bool last, cudaStream_t s) {
  if (last && p.y == nullptr) return Status::Error("r_step_first_hopper_kernel: the last step needs y");
  return dispatch_dtype_dim(p.dtype, p.D, [&](auto tt, auto dd) -> Status {
    using T = typename decltype(tt)::type;
    constexpr int D = decltype(dd)::value;
    return last ? launch<T, D, true>(p, s) : launch<T, D, false>(p, s);
  });
}

}  // namespace cuda
}  // namespace monarch
