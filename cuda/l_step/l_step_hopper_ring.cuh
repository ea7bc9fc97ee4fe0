// l_step_hopper_ring.cuh — what the two sm_90a L-step kernels share (l_step_final_hopper.cu,
// l_step_columns_hopper.cu): the work items (b, h, a, pair of columns), the producer's query boxes and
// candidate tiles, the bias warp's per-tile cL values, and the host-side tensor maps.
//
// A candidate tile is 64 / KR key tiles f of KR rows k each: KR = kLKRows = 32 (two key tiles f = 2·tt,
// 2·tt + 1; b1 ≤ 32, both kernels) or KR = 64 (one key tile, b1 in 33..64; the final kernel). Rows k ≥ b1
// are out of bounds of the {D, b1, b2, pairs} map and a key tile past the allowed prefix fLim is loaded at
// the out-of-bounds pair coordinate nPairs, so both arrive as zeros (never another column's or an unwritten
// causal pair's rows, whose NaNs 0 · NaN would spread); their biases are +INF.
#pragma once

#include "../common/hopper.cuh"
#include "../common/tma_map.h"
#include "l_step_config.cuh"

namespace monarch {
namespace cuda {
namespace {  // included by the sm_90a L-step kernels only

constexpr int kLRows = 64;   // query rows per consumer box, candidates per tile
constexpr int kLKRows = 32;  // rows k per key tile f in a candidate tile (b1 ≤ 32); two f per tile
// Rows k per key tile f in a candidate tile for b1: 32 (two key tiles per tile) up to b1 = 32, else 64.
inline int lhopper_key_rows(int b1) { return b1 <= kLKRows ? kLKRows : kLRows; }

// Pairs (b, h, a, f) of the problem; also the out-of-bounds pair coordinate.
MONARCH_HOST_DEVICE inline int64_t lhopper_pairs(const MonarchParams& p) {
  return int64_t(p.B) * p.H * p.Aq * p.Fk;
}
// The work items: pairs of columns of every (b, h, a).
MONARCH_HOST_DEVICE inline int64_t lhopper_items(const MonarchParams& p) {
  return int64_t((p.b2 + 1) / 2) * p.Aq * p.H * p.B;
}
// The shapes both kernels serve: b1 ≤ maxB1 (32; the final kernel 64), 32-bit TMA coordinates (nPairs
// itself included), and the gate every sm_90a step kernel shares (tma::hopper_step_runs: `which` kernel,
// on by default where `byDefault`).
inline bool lhopper_shape_ok(const MonarchParams& p, tma::StepKernel which, bool byDefault, int maxB1 = kLKRows) {
  return p.b1 >= 1 && p.b1 <= maxB1 && lhopper_pairs(p) < (int64_t(1) << 31) - 1 &&
         int64_t(p.Aq) * p.b1 < (int64_t(1) << 31) && tma::hopper_step_runs(p.dtype, p.D, which, byDefault);
}

struct LHopperItem {
  int jp, a, h, b;
  int fLim, nTiles;  // allowed key tiles of query tile a; candidate tiles (64 / KR key tiles each)
  int64_t pair0;     // pair (b, h, a, f = 0)
};
// Work item w: column pairs fastest, then query tiles, heads, batch rows.
template <int KR = kLKRows>
__device__ __forceinline__ LHopperItem lhopper_item(int64_t w, const MonarchParams& p, int nJp) {
  constexpr int KF = kLRows / KR;  // key tiles per candidate tile
  LHopperItem t;
  t.jp = int(w % nJp);
  w /= nJp;
  t.a = int(w % p.Aq);
  w /= p.Aq;
  t.h = int(w % p.H);
  t.b = int(w / p.H);
  t.fLim = allowed_key_tiles(p, t.a);
  t.nTiles = (t.fLim + KF - 1) / KF;
  t.pair0 = ((int64_t(t.b) * p.H + t.h) * p.Aq + t.a) * p.Fk;
  return t;
}

// Producer: the query boxes of the item's (one or two) columns, box c into qbox0 + c·tileBytes after
// consumer c freed it (nq: this thread's per-consumer box counters).
template <int kAtoms>
__device__ __forceinline__ void lhopper_issue_queries(const MonarchParams& p, const LHopperItem& t, const void* tmQ,
                                                      unsigned char* qbox0, int tileBytes, uint64_t* fullQ,
                                                      uint64_t* emptyQ, int (&nq)[2]) {
  using namespace hopper;
  for (int c = 0; c < 2; ++c) {
    const int j = 2 * t.jp + c;
    if (j >= p.b2) continue;
    mbar_wait(emptyQ + c, (nq[c] & 1) ^ 1);
    mbar_arrive_expect_tx(fullQ + c, uint32_t(tileBytes));
#pragma unroll
    for (int at = 0; at < kAtoms; ++at)
      tma_load_5d(qbox0 + c * tileBytes + at * kLRows * 128, tmQ, fullQ + c, at * 64, j, t.a * p.b1, t.h, t.b);
    ++nq[c];
  }
}

// Producer: candidate tile tt of column j of one {D, b1, b2, pairs} map (boxes of KR rows k) into the
// 64-row tile at dst.
template <int kAtoms, int KR = kLKRows>
__device__ __forceinline__ void lhopper_issue_candidates(unsigned char* dst, const void* map, uint64_t* bar,
                                                         const LHopperItem& t, int tt, int j, int64_t nPairs) {
  using namespace hopper;
  constexpr int KF = kLRows / KR;
#pragma unroll
  for (int hf = 0; hf < KF; ++hf) {
    const int f = KF * tt + hf;
    const int pc = f < t.fLim ? int(t.pair0 + f) : int(nPairs);  // past fLim: an all-zero box
#pragma unroll
    for (int at = 0; at < kAtoms; ++at)
      tma_load_4d(dst + at * kLRows * 128 + hf * KR * 128, map, bar, at * 64, 0, j, pc);
  }
}

// Bias warp: the cL values of candidate tile tt for both consumers into sBias[c][64] (+INF for padding).
template <int KR = kLKRows>
__device__ __forceinline__ void lhopper_write_biases(const MonarchParams& p, const LHopperItem& t, int tt,
                                                     float* sBias, int lane) {
  constexpr int KF = kLRows / KR;
  for (int c = 0; c < 2; ++c) {
    const int j = 2 * t.jp + c;
    if (j >= p.b2) continue;
#pragma unroll
    for (int r = 0; r < kLRows / 32; ++r) {
      const int cand = r * 32 + lane;  // candidate of the tile: key tile hf, row k
      const int hf = cand / KR, k = cand % KR;
      const int f = KF * tt + hf;
      const bool ok = f < t.fLim && k < p.b1;
      sBias[c * kLRows + cand] = ok ? p.cL[((t.pair0 + f) * p.b2 + j) * p.b1 + k] : INFINITY;
    }
  }
}

// Host: the queries q as {D, b2 (j), rows, H, B} with boxes of 64 rows i of one column j.
inline Status lhopper_encode_queries(CUtensorMap* map, const MonarchParams& p, int D) {
  const uint64_t es = 2;
  const uint64_t dims[5] = {uint64_t(D), uint64_t(p.b2), uint64_t(p.Aq) * p.b1, uint64_t(p.H), uint64_t(p.B)};
  const uint64_t strides[4] = {uint64_t(p.q.sS) * es, uint64_t(p.q.sS) * p.b2 * es, uint64_t(p.q.sH) * es,
                               uint64_t(p.q.sB) * es};
  const uint32_t box[5] = {64, 1, uint32_t(kLRows), 1, 1};
  return tma::encode_box(map, p.q.data, p.dtype, 5, dims, strides, box);
}
// Host: aL or y, [pairs][b2 (j)][b1 (k)][D], as {D, b1, b2, pairs} with boxes of kr rows k of one (pair, j).
inline Status lhopper_encode_candidates(CUtensorMap* map, const void* base, const MonarchParams& p, int D,
                                        int kr = kLKRows) {
  const uint64_t dims[4] = {uint64_t(D), uint64_t(p.b1), uint64_t(p.b2), uint64_t(lhopper_pairs(p))};
  const uint64_t strides[3] = {uint64_t(D) * 2, uint64_t(p.b1) * D * 2, uint64_t(p.b2) * p.b1 * D * 2};
  const uint32_t box[4] = {64, uint32_t(kr), 1, 1};
  return tma::encode_box(map, base, p.dtype, 4, dims, strides, box);
}

}  // namespace
}  // namespace cuda
}  // namespace monarch
