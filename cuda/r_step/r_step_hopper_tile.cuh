// r_step_hopper_tile.cuh — one R-step problem on a consumer warpgroup of the sm_90a R-step kernels
// (r_step_first_hopper.cu, r_step_later_hopper.cu): the b2 × b2 attention of a 64-row query box with
// one key tile already in shared memory (128-byte-swizzled boxes of 64 rows, hopper.cuh), written like
// r_step_rowwise_kernel writes it:
//   S = Q·Kᵀ (wgmma m64n64k16, both operands in shared memory), the one-pass masked softmax with
//   entropy in registers (the wgmma accumulator layout is the mma.m16n8k16 one per warp, so the
//   mma.sync helpers apply), aL = P·K and y = P·V (wgmma, P from registers, K and V MN-major), stored
//   normalised through the warp's 16 staging rows (16-byte stores); cL = Σ R log R, +INF for an empty row.
// The caller's hooks order the ring: after_s() once S is in registers (the queries may be released),
// before_pv() before the products read V, after_pv() once K and V are no longer read.
#pragma once

#include "../common/hopper.cuh"
#include "../common/tma_map.h"
#include "../common/wgmma.cuh"
#include "r_step_config.cuh"

namespace monarch {
namespace cuda {
namespace {  // included by the sm_90a R-step kernels only

constexpr int kHopperRows = 64;  // query columns j per consumer (one query box), keys l per tile (b2 ≤ 64)
constexpr int kHopperWideKeys = 80;  // keys l per tile of the wide rows (b2 in 65..80)

// Keys per tile for key rows of b2 tokens: 64, or 80 for the wide rows.
inline int r_hopper_key_rows(int b2) { return b2 <= kHopperRows ? kHopperRows : kHopperWideKeys; }

// Query units of both R-step kernels: u < Aq is query tile a = u, columns j < 64 (all of them when
// b2 ≤ 64); with the wide rows, u = Aq + t (t < ⌈Aq / 4⌉) is the packed unit of columns 64..79 of query
// tiles 4t .. 4t + 3, warp w holding tile 4t + w (r_hopper_unit_tile), so the 16 columns past 64 cost a
// quarter of a unit per tile instead of a whole one.
template <bool kWide>
MONARCH_HOST_DEVICE inline int r_hopper_units(int Aq) { return Aq + (kWide ? (Aq + 3) / 4 : 0); }
// The query tile of warp w in unit u (may be ≥ Aq in the last packed unit: no tile).
__device__ __forceinline__ int r_hopper_unit_tile(int u, int w, int Aq) { return u < Aq ? u : 4 * (u - Aq) + w; }

// The shapes both R-step kernels serve: key rows of 33..maxB2 tokens (64, or 80 where the kernel has
// wide instantiations for the shape), 32-bit key-row coordinates, and the gate every sm_90a step
// kernel shares (tma::hopper_step_runs: `which` kernel, on by default where `byDefault`).
inline bool r_hopper_shape_ok(const MonarchParams& p, tma::StepKernel which, bool byDefault, int maxB2 = kHopperRows) {
  return p.b2 > 32 && p.b2 <= maxB2 && int64_t(p.Fk) * p.b1 < (int64_t(1) << 31) &&
         tma::hopper_step_runs(p.dtype, p.D, which, byDefault);
}
// Host: the key rows of k (and v, last step) as 5-D maps {D, b2, Fk·b1, H, B}, boxes of one key row of
// `keyRows` tokens (tokens past b2 zero-filled).
inline Status r_hopper_encode_keys(CUtensorMap* mk, CUtensorMap* mv, const MonarchParams& p, int D, bool last,
                                   int keyRows = kHopperRows) {
  Status st = tma::encode_tile_rows(mk, p.k, p.dtype, p.B, p.Fk * p.b1, p.b2, p.H, D, keyRows);
  if (st.ok && last) st = tma::encode_tile_rows(mv, p.v, p.dtype, p.B, p.Fk * p.b1, p.b2, p.H, D, keyRows);
  if (!last) *mv = *mk;  // unused
  return st;
}

// Host: the outputs aL and y ([B][H][Aq][Fk][b2 (j)][b1 (k)][D], monarch.h) as 4-D maps {D, b1, b2,
// pairs} with boxes of 64 columns × one key row × 16 columns j (one warp's part), for the TMA stores.
inline Status r_hopper_encode_outputs(CUtensorMap* mal, CUtensorMap* my, const MonarchParams& p, int D, bool last) {
  const uint64_t pairs = uint64_t(p.B) * p.H * p.Aq * p.Fk;
  if (pairs >= (uint64_t(1) << 31)) return Status::Error("too many (b, h, a, f) pairs for 32-bit TMA coordinates");
  const uint64_t dims[4] = {uint64_t(D), uint64_t(p.b1), uint64_t(p.b2), pairs};
  const uint64_t strides[3] = {uint64_t(D) * 2, uint64_t(p.b1) * D * 2, uint64_t(p.b2) * p.b1 * D * 2};
  const uint32_t box[4] = {64, 1, 16, 1};
  Status st = tma::encode_box(mal, p.aL, p.dtype, 4, dims, strides, box);
  if (st.ok && last) st = tma::encode_box(my, p.y, p.dtype, 4, dims, strides, box);
  if (!last) *my = *mal;  // unused
  return st;
}
// Consumer warpgroups per CTA by shape, the size rules of both R-step kernels. Three consumers take one
// query tile each; in the last query-tile group of each item the third, or second and third, may have
// none. The two-consumer kernels are off by default, so "two" means the mma.sync kernels. Until
// session 12 three were taken only where they idle no more slots than two would, which sent Aq = 7, 8,
// 13, 14, 19, 20, 25, … to mma.sync (the H200 frames sweep: 25 frames 6.13 ms against 3.10 at 21;
// benchmarks/notes/kernel-preview.md, "Session 12").
// Later R-step: three unless more than a quarter of their slots would idle (Aq = 1, 2, 4).
inline int r_hopper_shape_consumers(const MonarchParams& p) {
  const int slots = (p.Aq + 2) / 3 * 3;
  return p.Aq >= 3 && 4 * (slots - p.Aq) <= slots ? 3 : 2;
}
// First R-step: three from two query tiles on, even where a third of the slots idle (H200, 480p
// resolution, T = 1: 2 frames 0.0672 ms on the mma.sync kernel → 0.0553 with three, 4 frames
// 0.215 → 0.192), two at Aq = 1.
inline int r_hopper_first_consumers(const MonarchParams& p) { return p.Aq >= 2 ? 3 : 2; }
// MONARCH_R_FIRST_STORE=staged (read once; an A/B switch): the three-consumer kernels store through
// their staging rows instead of the copy engine.
inline bool r_hopper_tma_stores() {
  static const bool staged = tma::env_is("MONARCH_R_FIRST_STORE", "staged");
  return !staged;
}
// MONARCH_R_FIRST_PIPE=0 (read once; an A/B switch): the TMA-store kernels run their 64-column parts
// one after the other in one accumulator set instead of issuing part p + 1 before storing part p.
inline bool r_hopper_pipe() {
  static const bool off = tma::env_is("MONARCH_R_FIRST_PIPE", "0");
  return !off;
}

// The keys this thread's logit columns l = 8n + 2·qd + b (n < R / 8, b < 2) may see, as bit 2n + b:
// l < b2 and, with a key mask, kv[l] != 0. One pass per tile, so the softmax tests a bit per logit.
template <int R>
__device__ __forceinline__ uint32_t key_ok_bits(int b2, const uint8_t* kv, int qd) {
  uint32_t bits = 0;  // l < b2: no branches (the loop over tiles can hoist it)
#pragma unroll
  for (int i = 0; i < R / 4; ++i) bits |= uint32_t((i / 2) * 8 + 2 * qd + (i & 1) < b2) << i;
  if (kv != nullptr) {
#pragma unroll
    for (int i = 0; i < R / 4; ++i) {
      if ((bits >> i) & 1u && kv[(i / 2) * 8 + 2 * qd + (i & 1)] == 0) bits &= ~(1u << i);
    }
  }
  return bits;
}
// scale_mask_logits (r_step_config.cuh) with the mask as key_ok_bits (a select per logit, no branch).
template <int R>
__device__ __forceinline__ void scale_mask_bits(float (&S)[R / 8][4], uint32_t bits, const float (&scale2)[2]) {
#pragma unroll
  for (int n = 0; n < R / 8; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float v = visible_logit(S[n][e] * scale2[e >> 1]);
      S[n][e] = (bits >> (2 * n + (e & 1))) & 1u ? v : -INFINITY;
    }
  }
}

// Bytes of one warp's TMA store buffer: 16 rows × 64 16-bit columns, 128-byte swizzled (hopper.cuh).
constexpr int kStoreBufBytes = 16 * 128;

// Where the three-consumer R-step's 64-column parts go (kSeq): through the copy engine (kTma, a
// bulk tensor store per warp and part from one of kBufs buffers of kStoreBufBytes taken in turn) or
// through the warp's staging rows as 16-byte stores (store_rows_staged).
struct RStoreTo {
  const CUtensorMap* aL;  // kTma: 4-D maps {D, b1, b2, pairs} of aL and y (boxes 64 × 1 × 16 × 1)
  const CUtensorMap* y;
  uint32_t bufs;          // kTma: shared-memory address of this warp's buffers (1024-byte aligned)
  uint32_t* count;        // kTma: this warp's stores so far (lane 0's bulk groups)
  int k, pair;            // kTma: the tile's key row and (b, h, a, f) pair index
  bool pipe;              // kTma: part p + 1's product is issued (into O2 / O1 in turn) before part p is stored
};

// One warp's 16 × 64 fragment rows (unscaled) to the box (c0, k, j0, pair) of `map`: wait until the
// buffer's previous store has read it, write it with stmatrix (conflict-free under the swizzle),
// fence it to the async proxy, then lane 0 issues the store. Rows past the map's extent (j ≥ b2) are
// clipped by the copy engine.
template <typename T, int kBufs>
__device__ __forceinline__ void store64_tma(const float (&O)[8][4], const CUtensorMap* map, uint32_t bufs,
                                            uint32_t& count, int lane, int c0, int k, int j0, int pair) {
  using namespace hopper;
  const uint32_t buf = bufs + (count % kBufs) * kStoreBufBytes;
  bulk_wait_read<kBufs - 1>(lane == 0);
  __syncwarp();
  const int m = lane / 8, rr = lane % 8, row = rr + 8 * (m & 1);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int n = 2 * i + (m >> 1);
    stmatrix_x4(buf + row * 128 + ((n ^ rr) << 4), pack2<T>(O[2 * i][0], O[2 * i][1]), pack2<T>(O[2 * i][2], O[2 * i][3]),
                pack2<T>(O[2 * i + 1][0], O[2 * i + 1][1]), pack2<T>(O[2 * i + 1][2], O[2 * i + 1][3]));
  }
  fence_proxy_async();
  __syncwarp();
  tma_store_4d_commit(lane == 0, map, buf, c0, k, j0, pair);
  ++count;
}

// Registers of one consumer thread, kept across tiles so the compiler allocates them once. kSeq: the
// products run 64 output columns at a time in O1 (aL, then y), so O2 is not needed. RK: keys per tile.
template <int D, bool kLast, bool kSeq = false, int RK = kHopperRows>
struct RHopperRegs {
  float S[RK / 8][4];
  uint32_t pa[RK / 16][4];
  float O1[kSeq ? 8 : D / 8][4];  // kSeq: 64 output columns at a time
  float O2[kSeq ? 8 : kLast ? D / 8 : 1][4];  // kSeq: the next part's accumulators (RStoreTo::pipe)
  // key_ok_bits<RK>(b2, nullptr, lane % 4), set once by the kernel: the keys of a tile without a key mask
  // (the tile then tests no bytes and builds no bits).
  uint32_t okBits;
};

// qAddr / kAddr / vAddr: shared-memory byte addresses of the query box (D / 64 atoms of 64 rows × 128
// bytes each, consecutive) and the key tile's K and V (D / 64 atoms of RK rows × 128 bytes each). scale2: base-2 logit scale of this thread's
// two rows (s·log2(e)·invT); kvf: the key row's keyValid or null; colK0: the aL / cL / y row of (j = 0, k);
// stage: this warp's 16 staging rows; wj0: this warp's first query column.
// kSeq (the three-consumer first R-step, 160 registers): R is normalised before it is rounded for the
// products (one multiply per probability instead of one per output element), and aL = R·K (and y = R·V) run as
// products of 64 output columns one after the other in one 64 × 64 accumulator set, each stored as soon
// as it is done.
// kTmaBufs > 0 (kSeq only): the parts go out as bulk tensor stores (store64_tma, `to`) instead of
// through `stage`.
template <typename T, int D, bool kLast, bool kSeq = false, int kTmaBufs = 0, int RK = kHopperRows, typename AfterS,
          typename BeforePV, typename AfterPV>
__device__ __forceinline__ void r_hopper_tile(const MonarchParams& p, RHopperRegs<D, kLast, kSeq, RK>& r, uint32_t qAddr,
                                              uint32_t kAddr, uint32_t vAddr, const float (&scale2)[2],
                                              const uint8_t* kvf, int64_t colK0, T* stage, int wj0, int lane,
                                              AfterS after_s, BeforePV before_pv, AfterPV after_pv,
                                              const RStoreTo& to = RStoreTo{}) {
  static_assert(kTmaBufs == 0 || kSeq, "TMA stores serve the 64-column parts of kSeq");
  using namespace hopper;
  constexpr int Q = kHopperRows;  // query rows of the box
  constexpr int R = RK;           // keys of the tile
  const int g = lane / 4, qd = lane % 4;
  const int b2 = p.b2;
  // Descriptors are encoded once per operand and advanced by constants (desc_advance).
  const uint64_t dQ = desc_kmajor(qAddr), dK = desc_kmajor(kAddr);
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const uint32_t atom = kk / 4, off = (kk % 4) * 32;
    Wgmma<T, R>::ss(r.S, desc_advance(dQ, atom * Q * 128 + off), desc_advance(dK, atom * R * 128 + off),
                    kk > 0 ? 1 : 0);
  }
  wgmma_commit();
  wgmma_wait<0>();
  fence_regs(r.S);
  after_s();

  scale_mask_bits<R>(r.S, kvf != nullptr ? key_ok_bits<R>(b2, kvf, qd) : r.okBits, scale2);
  OnlineSoftmax<R, true> sm;  // one tile from the initial state: a plain softmax
  sm.first(r.S);
  if constexpr (!kSeq) c_to_a_frags<R, T>(r.pa, r.S);
  sm.finalize();
  float inv[2];
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) inv[hh] = sm.l[hh] > 0.f ? 1.f / sm.l[hh] : 0.f;
  if constexpr (kSeq) {  // R = p / ℓ before rounding; the outputs are then stored unscaled
#pragma unroll
    for (int n = 0; n < R / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) r.S[n][e] *= inv[e >> 1];
    }
    c_to_a_frags<R, T>(r.pa, r.S);
  }

  const int nRows = b2 - wj0;  // rows r < nRows of this warp are real columns j (warp-uniform)
  const int64_t row0 = (colK0 + int64_t(wj0) * p.b1) * D;
  const int64_t rowStride = int64_t(p.b1) * D;
  if constexpr (kSeq) {
    const float one[2] = {1.f, 1.f};
    const uint64_t dKm = desc_mnmajor(kAddr, R * 128), dV = desc_mnmajor(vAddr, R * 128);
    constexpr int kParts = (kLast ? 2 : 1) * (D / 64);  // (aL, y) × 64-column atoms
    bool piped = false;
    if constexpr (kTmaBufs > 0) {
      if (to.pipe) {  // part p's product is issued before part p − 1 is stored: O1, O2 in turn
        piped = true;
#pragma unroll
        for (int part = 0; part <= kParts; ++part) {  // unrolled: the accumulator indices are static
          if (part < kParts) {
            if (part == (kLast ? D / 64 : 0)) before_pv();  // before the first product that reads V
            const uint64_t dB = desc_advance(part >= D / 64 ? dV : dKm, (part % (D / 64)) * R * 128);
            wgmma_fence();
            if (part % 2 == 0) {
#pragma unroll
              for (int kt = 0; kt < R / 16; ++kt)
                Wgmma<T, 64>::rs(r.O1, r.pa[kt], desc_advance(dB, kt * 16 * 128), kt > 0);
            } else {
#pragma unroll
              for (int kt = 0; kt < R / 16; ++kt)
                Wgmma<T, 64>::rs(r.O2, r.pa[kt], desc_advance(dB, kt * 16 * 128), kt > 0);
            }
            wgmma_commit();
          }
          if (part > 0) {
            const int q = part - 1;  // the part to store
            if (part < kParts) {
              wgmma_wait<1>();
            } else {
              wgmma_wait<0>();
            }
            if (q == kParts - 1) after_pv();
            const CUtensorMap* map = q >= D / 64 ? to.y : to.aL;
            const int c0 = (q % (D / 64)) * 64;
            if (q % 2 == 0) {
              fence_regs(r.O1);
              if (nRows > 0) store64_tma<T, kTmaBufs>(r.O1, map, to.bufs, *to.count, lane, c0, to.k, wj0, to.pair);
            } else {
              fence_regs(r.O2);
              if (nRows > 0) store64_tma<T, kTmaBufs>(r.O2, map, to.bufs, *to.count, lane, c0, to.k, wj0, to.pair);
            }
          }
        }
      }
    }
#pragma unroll 1
    for (int part = 0; part < (piped ? 0 : kParts); ++part) {
      const bool values = part >= D / 64;  // y = R·V (else aL = R·K)
      const int atom = part % (D / 64);
      if (part == (kLast ? D / 64 : 0)) before_pv();  // before the first product that reads V
      const uint64_t dB = desc_advance(values ? dV : dKm, atom * R * 128);
      wgmma_fence();
#pragma unroll
      for (int kt = 0; kt < R / 16; ++kt)
        Wgmma<T, 64>::rs(r.O1, r.pa[kt], desc_advance(dB, kt * 16 * 128), kt > 0);  // kt = 0 overwrites
      wgmma_commit();
      wgmma_wait<0>();
      fence_regs(r.O1);
      if (part == kParts - 1) after_pv();
      if (nRows > 0) {
        if constexpr (kTmaBufs > 0) {
          store64_tma<T, kTmaBufs>(r.O1, values ? to.y : to.aL, to.bufs, *to.count, lane, atom * 64, to.k, wj0,
                                   to.pair);
        } else {
          T* dst = static_cast<T*>(values ? p.y : p.aL) + row0 + atom * 64;
          store_rows_staged<64, T>(r.O1, one, lane, stage, dst, rowStride, nRows);
        }
      }
    }
  } else {
    before_pv();
    wgmma_fence();
#pragma unroll
    for (int kt = 0; kt < R / 16; ++kt)  // kt = 0 overwrites the accumulators
      Wgmma<T, D>::rs(r.O1, r.pa[kt], desc_mnmajor(kAddr + kt * 16 * 128, R * 128), kt > 0);
    if constexpr (kLast) {
#pragma unroll
      for (int kt = 0; kt < R / 16; ++kt) Wgmma<T, D>::rs(r.O2, r.pa[kt], desc_mnmajor(vAddr + kt * 16 * 128, R * 128), kt > 0);
    }
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs(r.O1);
    if constexpr (kLast) fence_regs(r.O2);
    after_pv();

    if (nRows > 0) {
      store_rows_staged<D, T>(r.O1, inv, lane, stage, static_cast<T*>(p.aL) + row0, rowStride, nRows);
      if constexpr (kLast) store_rows_staged<D, T>(r.O2, inv, lane, stage, static_cast<T*>(p.y) + row0, rowStride, nRows);
    }
  }
  if (qd == 0) {
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int j = wj0 + g + 8 * hh;
      if (j < b2) p.cL[colK0 + int64_t(j) * p.b1] = sm.l[hh] <= 0.f ? INFINITY : sm.neg_entropy_fast(hh, inv[hh]);
    }
  }
}

}  // namespace
}  // namespace cuda
}  // namespace monarch
