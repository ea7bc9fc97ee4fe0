// r_step_later_hopper.cu — the later R-steps (T ≥ 2, docs/ALGORITHMS.md §A.5) for key rows of 33..80
// tokens on sm_90a, with the results of r_step_rowwise_kernel<kFirst = false>: queries aR[a,f,k,j], a
// per-query temperature min(1/cR, maxInvTemp), keys and values of key row (f, k), outputs aL, y (last
// step) and cL of pair (a, f).
//
// Unlike the first step, the queries depend on f, so every (a, f, k) is one key tile with its own
// queries. Work items (b, h, f, k, group of NC query units u = NC·ap + c), query-unit groups fastest
// so the CTAs running at once share the key rows (f, k) in L2; persistent, one CTA per SM. NC = 3
// where at most a quarter of three consumers' slots idle (r_hopper_shape_consumers), with TMA stores,
// else 2. A unit is one query tile a (columns j < 64) for key rows of ≤ 64 tokens. Key rows of 65..80
// tokens ("wide", 720p MonarchRT's b2 = 80; three consumers with TMA stores only) take 80-key tiles
// (S on wgmma m64n80) and the first step's two kinds of unit (r_hopper_units): a full unit holds
// columns j < 64 of pair (a, f); a packed unit holds columns 64..79 of the pairs (4t + w, f) of four
// query tiles, one per warp w, each warp with its own aR rows, temperatures, causal check and output
// pair; a warp whose tile is missing or may not see f computes on whatever its rows hold and stores
// nothing.
//   producer (warpgroup 0, one thread): per item, into one slot of a 2- to 4-deep ring (full/empty
//     mbarriers), the TMA boxes of the active units' aR queries (encode_tile_rows over the workspace with
//     B = H = 1: a 64-row box per full unit, a 16-row box per warp with a pair in a packed unit) and of
//     the item's K (and V) tile (the first step's 5-D maps: tokens past b2 zero-filled).
//   consumers (warpgroups 1..NC): one query unit each, r_hopper_tile (r_step_hopper_tile.cuh) on the slot.
// An item whose pairs are all causally forbidden (or past Aq) is skipped by every role alike; a consumer
// with no pair (every warp's forbidden, or no unit) still waits for the slot's copies before it frees the
// slot, so its arrivals can never count towards a later use of the slot.
#include <monarch/monarch_cuda.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "../common/hopper_launch.cuh"
#include "r_step_hopper.h"
#include "r_step_hopper_tile.cuh"

namespace monarch {
namespace cuda {
namespace {

using namespace detail;
using namespace hopper;

constexpr int kRows = kHopperRows;

// NC consumer warpgroups (2, or 3 with 160 registers: r_hopper_tile's kSeq, with TMA stores when kTma)
// and a producer warpgroup, as the first R-step (r_step_first_hopper.cu).
template <int NC>
struct RlhShape {
  static constexpr int kThreads = 128 * (NC + 1);
  static constexpr int kProducerRegs = NC == 2 ? 24 : 32;
  static constexpr int kConsumerRegs = NC == 2 ? 240 : 160;
  static constexpr bool kSeq = NC == 3;
  static constexpr int kTmaBufs = 2;  // store buffers per consumer warp (kTma)
};

// A slot: the query box of each consumer (kTileBytes), then the K (and V) tile of RK keys (kKeyBytes).
template <int D, bool kLast, int NC, bool kTma, int RK = kRows>
struct RlhSmem {
  static constexpr int kAtoms = D / 64;
  static constexpr int kTileBytes = kRows * D * 2;  // one query box (a consumer's queries)
  static constexpr int kKeyBytes = RK * D * 2;      // one K or V tile
  static constexpr int kKOff = NC * kTileBytes;     // in the slot
  static constexpr int kVOff = kKOff + kKeyBytes;
  static constexpr int kSlotBytes = kKOff + (kLast ? 2 : 1) * kKeyBytes;
  static_assert(kTileBytes % 1024 == 0 && kKeyBytes % 1024 == 0,
                "the boxes keep the 128-byte swizzle's 1024-byte alignment");
  // 16 rows per consumer warp: staging rows, or kTma's store buffers
  static constexpr int kStageBytes =
      kTma ? NC * 4 * RlhShape<NC>::kTmaBufs * kStoreBufBytes : NC * 4 * 16 * Smem<D>::kLd * 2;
  static constexpr int kFit = (232448 - 1024 - 64 - kStageBytes) / kSlotBytes;  // what fits next to them
  static constexpr int kSlots = kFit < 4 ? kFit : 4;
  static_assert(kSlots >= 2, "two slots fit");
  static constexpr int kStageOff = kSlots * kSlotBytes;  // 1024-byte aligned (kTileBytes and kKeyBytes are)
  static constexpr int kBarOff = kStageOff + kStageBytes;
  static constexpr int kBars = 2 * kSlots;
  static constexpr size_t kBytes = size_t(kBarOff) + kBars * 8 + 1024;  // + alignment slack
};

struct RlhItem {
  int ap, k, f, h, b;
};
__device__ __forceinline__ RlhItem rlh_item(int64_t w, const MonarchParams& p, int nAp) {
  RlhItem t;
  t.ap = int(w % nAp);
  w /= nAp;
  t.k = int(w % p.b1);
  w /= p.b1;
  t.f = int(w % p.Fk);
  w /= p.Fk;
  t.h = int(w % p.H);
  t.b = int(w / p.H);
  return t;
}
// Whether consumer c of NC has a problem in item t: its query tile exists and may see key tile f. With
// the wide rows (kWide), which of its warps have one, as bits 0..3 (a full unit: all four or none; a
// packed unit: each warp by its own tile).
template <int NC, bool kWide>
__device__ __forceinline__ auto rlh_warps(const MonarchParams& p, const RlhItem& t, int c) {
  const int u = NC * t.ap + c;
  if constexpr (!kWide) {
    return u < p.Aq && pair_allowed(p, u, t.f);
  } else {
    if (u < p.Aq) return pair_allowed(p, u, t.f) ? 0xFu : 0u;
    uint32_t on = 0;
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int a = r_hopper_unit_tile(u, w, p.Aq);
      if (a < p.Aq && pair_allowed(p, a, t.f)) on |= 1u << w;
    }
    return on;
  }
}
// aR / cR row of (b, h, a, f, k): the query box's row in the workspace map.
__device__ __forceinline__ int64_t rlh_qrow(const MonarchParams& p, const RlhItem& t, int a) {
  return ((((int64_t(t.b) * p.H + t.h) * p.Aq + a) * p.Fk) + t.f) * p.b1 + t.k;
}

// kTma (three consumers only): the outputs go out as bulk tensor stores through tmAL / tmY (4-D maps
// {D, b1, b2, pairs}, r_hopper_tile's RStoreTo), else through the staging rows. RK: keys per tile (64;
// 80 for the wide rows, three consumers with TMA stores only, whose packed units load their queries
// through tmQ16, the same workspace in 16-row boxes).
template <typename T, int D, bool kLast, int NC, bool kTma, int RK = kRows>
__global__ void __launch_bounds__(RlhShape<NC>::kThreads, 1)
    r_step_later_hopper_kernel(const __grid_constant__ CUtensorMap tmQ, const __grid_constant__ CUtensorMap tmK,
                               const __grid_constant__ CUtensorMap tmV, const __grid_constant__ CUtensorMap tmAL,
                               const __grid_constant__ CUtensorMap tmY, MonarchParams p, int pipe,
                               const __grid_constant__ CUtensorMap tmQ16) {
#if MONARCH_SM90A
  static_assert(!kTma || RlhShape<NC>::kSeq, "TMA stores serve the 64-column parts");
  constexpr bool kWide = RK > kRows;
  static_assert(!kWide || kTma,
                "wide rows: three consumers with TMA stores (with the staging rows one slot fits at D = 128 with y)");
  using L = RlhSmem<D, kLast, NC, kTma, RK>;
  using Shape = RlhShape<NC>;
  extern __shared__ unsigned char smem_raw[];
  unsigned char* base = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  T* sStage = reinterpret_cast<T*>(base + L::kStageOff);
  uint64_t* full = reinterpret_cast<uint64_t*>(base + L::kBarOff);
  uint64_t* empty = full + L::kSlots;
  // Slot s: Q of consumers 0..NC−1 (kTileBytes each), K, V (kKeyBytes each).
  auto slot_q = [&](int s, int c) { return base + s * L::kSlotBytes + c * L::kTileBytes; };
  auto slot_k = [&](int s) { return base + s * L::kSlotBytes + L::kKOff; };
  auto slot_v = [&](int s) { return base + s * L::kSlotBytes + L::kVOff; };

  using Warps = decltype(rlh_warps<NC, kWide>(p, RlhItem{}, 0));  // bool, or kWide's bits
  const int wg = threadIdx.x / 128;
  const int nAp = (r_hopper_units<kWide>(p.Aq) + NC - 1) / NC;
  const int64_t nWork = int64_t(nAp) * p.b1 * p.Fk * p.H * p.B;

  if (threadIdx.x == 0) {
    for (int s = 0; s < L::kSlots; ++s) {
      mbar_init(full + s, 1);
      mbar_init(empty + s, 128 * NC);
    }
    mbar_fence_init();
  }
  __syncthreads();

  if (wg == 0) {  // ---- producer ----
    regs_dealloc<Shape::kProducerRegs>();
    if (threadIdx.x == 0) {
      tma_prefetch_map(&tmQ);
      if (kWide) tma_prefetch_map(&tmQ16);
      tma_prefetch_map(&tmK);
      if (kLast) tma_prefetch_map(&tmV);
      uint64_t it = 0;
      for (int64_t w = blockIdx.x; w < nWork; w += gridDim.x) {
        const RlhItem t = rlh_item(w, p, nAp);
        Warps on[NC];
        bool any = false;
#pragma unroll
        for (int c = 0; c < NC; ++c) any |= on[c] = rlh_warps<NC, kWide>(p, t, c);  // (bits: any set)
        if (!any) continue;
        const int s = it % L::kSlots;
        const uint32_t ph = (it / L::kSlots) & 1;
        ++it;
        mbar_wait(empty + s, ph ^ 1);
        if constexpr (kWide) {  // 16-row query boxes: four per full unit, one per warp on in a packed unit
          int quarters = 0;
#pragma unroll
          for (int c = 0; c < NC; ++c) quarters += __popc(on[c]);  // full units: 0xF
          mbar_arrive_expect_tx(full + s, uint32_t(quarters * (L::kTileBytes / 4) + (1 + int(kLast)) * L::kKeyBytes));
        } else {
          int boxes = 1 + int(kLast);
#pragma unroll
          for (int c = 0; c < NC; ++c) boxes += int(on[c]);
          mbar_arrive_expect_tx(full + s, uint32_t(boxes * L::kTileBytes));
        }
        for (int c = 0; c < NC; ++c) {
          if (on[c] == 0) continue;
          const int u = NC * t.ap + c;
          if (!kWide || u < p.Aq) {  // columns j < 64 of pair (u, f)
            const int qrow = int(rlh_qrow(p, t, u));
#pragma unroll
            for (int at = 0; at < L::kAtoms; ++at)
              tma_load_5d(slot_q(s, c) + at * kRows * 128, &tmQ, full + s, at * 64, 0, qrow, 0, 0);
          } else {  // packed: columns 64.. of each warp's own pair, 16 rows each (nothing for a warp off)
            for (int qw = 0; qw < 4; ++qw) {
              if (((on[c] >> qw) & 1u) == 0) continue;
              const int qrow = int(rlh_qrow(p, t, r_hopper_unit_tile(u, qw, p.Aq)));
#pragma unroll
              for (int at = 0; at < L::kAtoms; ++at)
                tma_load_5d(slot_q(s, c) + at * kRows * 128 + qw * 16 * 128, &tmQ16, full + s, at * 64, kRows, qrow, 0,
                            0);
            }
          }
        }
        const int krow = t.f * p.b1 + t.k;
#pragma unroll
        for (int at = 0; at < L::kAtoms; ++at)
          tma_load_5d(slot_k(s) + at * RK * 128, &tmK, full + s, at * 64, 0, krow, t.h, t.b);
        if constexpr (kLast) {
#pragma unroll
          for (int at = 0; at < L::kAtoms; ++at)
            tma_load_5d(slot_v(s) + at * RK * 128, &tmV, full + s, at * 64, 0, krow, t.h, t.b);
        }
      }
    }
    return;
  }

  // ---- consumers ----
  regs_alloc<Shape::kConsumerRegs>();
  const int c = wg - 1;
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  const int g = lane / 4;
  const int b2 = p.b2;
  T* stage = sStage + (c * 4 + warp) * 16 * Smem<D>::kLd;
  const int wj0 = warp * 16;  // this warp's query columns j = wj0 + [0, 16) in a full unit
  const int64_t tileToks = int64_t(p.b1) * b2;
  RHopperRegs<D, kLast, Shape::kSeq, RK> regs;
  regs.okBits = key_ok_bits<RK>(p.b2, nullptr, lane % 4);
  uint32_t nStores = 0;  // kTma: this warp's bulk stores so far
  const uint32_t storeBufs = smem_addr(sStage) + (c * 4 + warp) * Shape::kTmaBufs * kStoreBufBytes;

  uint64_t it = 0;
  for (int64_t w = blockIdx.x; w < nWork; w += gridDim.x) {
    const RlhItem t = rlh_item(w, p, nAp);
    Warps mine = 0;
    bool any = false;
#pragma unroll
    for (int o = 0; o < NC; ++o) {
      const Warps on = rlh_warps<NC, kWide>(p, t, o);
      any |= on;
      if (o == c) mine = on;
    }
    if (!any) continue;  // skipped by every role
    const int s = it % L::kSlots;
    const uint32_t ph = (it / L::kSlots) & 1;
    ++it;
    mbar_wait(full + s, ph);  // also when idle: see the file comment
    if (mine == 0) {
      mbar_arrive(empty + s);
      continue;
    }
    int a = NC * t.ap + c;  // this warp's query tile
    int wj = wj0;           // and first query column j
    if constexpr (kWide) {
      if (a >= p.Aq) {  // packed unit: columns 64.. of the warp's own tile; a warp off (no tile, or its
        // pair causally forbidden) computes on whatever its rows hold and stores nothing (wj past b2)
        const bool warpOn = ((mine >> warp) & 1u) != 0;
        a = warpOn ? r_hopper_unit_tile(a, warp, p.Aq) : 0;
        wj = warpOn ? kRows : b2;
      }
    }
    const int64_t qrow = rlh_qrow(p, t, a);
    const int64_t rowJ0 = qrow * b2;  // aR / cR row (j = 0)
    float scale2[2];
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int j = wj + g + 8 * hh;
      scale2[hh] = p.scale * kLog2e * (j < b2 ? r_inv_temp(p.cR[rowJ0 + j], p.maxInvTemp) : 1.f);
    }
    const uint8_t* kvf = p.keyValid ? p.keyValid + (int64_t(t.b) * p.Fk + t.f) * tileToks + int64_t(t.k) * b2 : nullptr;
    const int64_t pair = ((int64_t(t.b) * p.H + t.h) * p.Aq + a) * p.Fk + t.f;
    const int64_t colK0 = pair * b2 * p.b1 + t.k;  // aL / cL / y row (j = 0, k)
    const RStoreTo to{&tmAL, &tmY, storeBufs, &nStores, t.k, int(pair), pipe != 0};
    r_hopper_tile<T, D, kLast, Shape::kSeq, kTma ? Shape::kTmaBufs : 0, RK>(
        p, regs, smem_addr(slot_q(s, c)), smem_addr(slot_k(s)), smem_addr(slot_v(s)), scale2, kvf, colK0, stage, wj,
        lane, [] {}, [] {}, [&] { mbar_arrive(empty + s); }, to);
  }
  if constexpr (kTma) {
    if (lane == 0) bulk_wait<0>();  // the outputs are written (and the buffers read) before the CTA ends
  }
#else
  static_assert(RlhSmem<D, kLast, NC, kTma, RK>::kAtoms >= 1, "head dim is a multiple of 64");
#endif
}

template <typename T, int D, bool kLast>
Status launch(const MonarchParams& p, cudaStream_t s) {
  // Queries: the aR workspace as rows of b2 × D (one box per (b, h, a, f, k); the wide rows' packed units
  // also in 16-row boxes); keys and values as in the first step (80-key boxes for the wide rows).
  const int64_t qRows = int64_t(p.B) * p.H * p.Aq * p.Fk * p.b1;
  Act aR;
  aR.data = p.aR, aR.sS = D;
  const int rk = r_hopper_key_rows(p.b2);
  const int nc = r_hopper_shape_consumers(p);
  const bool tmaStores = nc == 3 && r_hopper_tma_stores();
  if (rk != kRows && !tmaStores)  // r_step_later_hopper_applies does not send them here
    return Status::Error("r_step_later_hopper_kernel: key rows of 65..80 tokens need three consumers with TMA stores");
  CUtensorMap mq, mk, mv;
  Status st = tma::encode_tile_rows(&mq, aR, p.dtype, 1, int(qRows), p.b2, 1, D, kRows);
  CUtensorMap mq16 = mq;  // wide rows: 16-row boxes of the packed units (else unused)
  if (st.ok && rk != kRows) st = tma::encode_tile_rows(&mq16, aR, p.dtype, 1, int(qRows), p.b2, 1, D, 16);
  if (st.ok) st = r_hopper_encode_keys(&mk, &mv, p, D, kLast, rk);
  CUtensorMap mal = mq, my = mq;  // unused unless tmaStores
  if (st.ok && tmaStores) st = r_hopper_encode_outputs(&mal, &my, p, D, kLast);
  if (!st.ok) return Status::Error("r_step_later_hopper_kernel: " + st.message);
  auto go = [&](auto kernel, size_t smem, int threads, int ncs, int units) {
    const int64_t items = int64_t((units + ncs - 1) / ncs) * p.b1 * p.Fk * p.H * p.B;
    return launch_persistent(kernel, "r_step_later_hopper_kernel", smem, threads, items, p.maxCtas, s, mq, mk, mv, mal, my,
                             p, int(r_hopper_pipe()), mq16);
  };
  if (rk != kRows)
    return go(r_step_later_hopper_kernel<T, D, kLast, 3, true, kHopperWideKeys>,
              RlhSmem<D, kLast, 3, true, kHopperWideKeys>::kBytes, RlhShape<3>::kThreads, 3,
              r_hopper_units<true>(p.Aq));
  if (nc == 2)
    return go(r_step_later_hopper_kernel<T, D, kLast, 2, false>, RlhSmem<D, kLast, 2, false>::kBytes,
              RlhShape<2>::kThreads, 2, p.Aq);
  return tmaStores ? go(r_step_later_hopper_kernel<T, D, kLast, 3, true>, RlhSmem<D, kLast, 3, true>::kBytes,
                        RlhShape<3>::kThreads, 3, p.Aq)
                   : go(r_step_later_hopper_kernel<T, D, kLast, 3, false>, RlhSmem<D, kLast, 3, false>::kBytes,
                        RlhShape<3>::kThreads, 3, p.Aq);
}

// The size rule (MONARCH_PREVIEW_KERNELS unset), from the H200 A/B recorded in
// benchmarks/results/h200-2026-12-03-s9/ (call 3; kernel-preview.md, "Size rules"): on where three
// consumers are picked and the parts leave by TMA stores (480p T = 2 later R-step 3.57 ms on the
// mma.sync kernel → 2.49; the self-forcing chunk T = 2 1.35 → 1.23 ms with it). With two consumers it
// stays slower than the mma.sync kernel (sessions 6-7), so it runs there only when selected.
// The wide rows (b2 in 65..80) by the same rule, where the first step takes them too (its rule, two
// query tiles on, holds wherever three consumers are picked here); not yet measured on the GPU. They
// have only the three-consumer TMA-store kernels, so outside this rule they stay on the mma.sync
// kernel even when MONARCH_PREVIEW_KERNELS selects r-later.
bool r_later_hopper_by_default(const MonarchParams& p) {
  return r_hopper_shape_consumers(p) == 3 && r_hopper_tma_stores();
}

}  // namespace

bool r_step_later_hopper_applies(const MonarchParams& p) {
  // TMA coordinates are 32-bit: the aR rows of the whole problem here, the key rows in r_hopper_shape_ok
  // (which also holds the size rule and the MONARCH_PREVIEW_KERNELS gate). Key rows of 65..80 tokens only
  // where the wide instantiations serve the shape (three consumers, TMA stores).
  const bool byDefault = r_later_hopper_by_default(p);
  return p.aR != nullptr && p.cR != nullptr && p.aL != nullptr && p.cL != nullptr &&
         int64_t(p.B) * p.H * p.Aq * p.Fk * p.b1 < (int64_t(1) << 31) &&
         r_hopper_shape_ok(p, tma::StepKernel::kRLater, byDefault, byDefault ? kHopperWideKeys : kHopperRows);
}

Status r_step_later_hopper(const MonarchParams& p, bool last, cudaStream_t s) {
  if (last && p.y == nullptr) return Status::Error("r_step_later_hopper_kernel: the last step needs y");
  return dispatch_dtype_dim(p.dtype, p.D, [&](auto tt, auto dd) -> Status {
    using T = typename decltype(tt)::type;
    constexpr int D = decltype(dd)::value;
    return last ? launch<T, D, true>(p, s) : launch<T, D, false>(p, s);
  });
}

}  // namespace cuda
}  // namespace monarch
