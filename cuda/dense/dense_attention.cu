// dense_attention.cu — dense softmax attention forward, FlashAttention-2 style (docs/ALGORITHMS.md §0),
// with the online-entropy accumulator of §C.3 and optional per-row LSE / entropy outputs.
//
// Tiling: one CTA of 4 warps per (query block of kBM = 128 rows, head, batch); warp w owns query rows
// [32w, 32w+32) as two m16 tiles that share every K/V fragment. Key/value tiles of BN rows stream
// through a STAGES-deep cp.async ring in shared memory (one barrier per tile); S = Q·Kᵀ and O += P·V
// run on mma.sync m16n8k16 with fp32 accumulators; P never leaves registers. The softmax state
// (dense_softmax.cuh) rescales O lazily and folds the scale into exp2 on unmasked tiles; the
// entropy variant uses the same tiling (one extra FMA per logit).
// Masks: key tail (Nk), keyValid, block-causal (query at position q0 + n sees keys
// [0, ((q0+n)/C + 1)·C)); the key loop stops at the last tile any row of the block may see.
// Non-finite logits of visible keys (NaN, ±Inf, overflow) make the row NaN as on the CPU (cpu/softmax.h):
// visible_logit on masked tiles, the fused path's min in dense_softmax.cuh.
#include "../common/fp32_stages.h"
#include <monarch/monarch_cuda.h>
#include "dense_hopper.h"
#include "dense_softmax.cuh"
#include "../common/online_softmax.cuh"  // rescale_rows, zero_acc

// Build-time tiling choice (keys per tile at D = 128 and D = 64, cp.async stages), for measuring variants.
#ifndef MONARCH_DENSE_BN128
#define MONARCH_DENSE_BN128 64
#endif
#ifndef MONARCH_DENSE_BN64
#define MONARCH_DENSE_BN64 64
#endif
#ifndef MONARCH_DENSE_STAGES
#define MONARCH_DENSE_STAGES 2
#endif
// Test hook: 1 = always take the small-shared-memory tiling (what devices with < 2 × 105 KB of
// shared memory per SM run: sm_80, sm_86/89, sm_120), so the checker can cover it on an H100.
#ifndef MONARCH_DENSE_FORCE_SMALL
#define MONARCH_DENSE_FORCE_SMALL 0
#endif

namespace monarch {
namespace cuda {
namespace {

using namespace detail;

constexpr int kMT = 2;             // m16 tiles per warp: each K/V fragment feeds 2 mma (see mma_utils.cuh)
constexpr int kBM = 64 * kMT;      // query rows per CTA: 4 warps × kMT × 16
// Keys per tile, the same with and without the entropy accumulator. At D = 128, 64 keys (each Q
// A-fragment feeds 4 K fragments) fit in 254 registers only with the strength-reduced K/V loader
// below (ptxas -v, sm_90a: plain 0 spill, entropy 8 B); BN 64 measured +9% over BN 32 (notes file).
// Devices that cannot hold two such CTAs per SM (D = 128 at BN 64: 2 × 104 KB) take BN 32 with a
// 2-stage ring (68 KB per CTA), the tiling of the earlier kernel.
template <int D>
constexpr int dense_bn() {
  return D == 128 ? MONARCH_DENSE_BN128 : MONARCH_DENSE_BN64;
}
constexpr int kStagesMain = MONARCH_DENSE_STAGES;
constexpr int kBNSmall = 32, kStagesSmall = 2;
static_assert(kStagesMain >= 2, "cp.async ring needs at least 2 stages");
constexpr int kThreads = 128;

template <int D, typename T, int kBN, int kStages>
constexpr size_t dense_smem_bytes() {
  return size_t(kBM + 2 * kStages * kBN) * Smem<D>::kLd * sizeof(T);  // Q + K, V ring
}

template <typename T, int D, bool kEntropy, int kBN, int kStages>
__global__ void __launch_bounds__(kThreads, 2) dense_attention_kernel(DenseParams p) {
  static_assert(kStages >= 2, "cp.async ring needs at least 2 stages");
  constexpr int LD = Smem<D>::kLd;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // [kBM][LD]
  T* sK = sQ + kBM * LD;                   // [kStages][kBN][LD]
  T* sV = sK + kStages * kBN * LD;         // [kStages][kBN][LD]

  const int qb = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, qd = lane % 4;
  const int row0 = qb * kBM;
  const int wrow0 = row0 + warp * 16 * kMT;  // this warp's rows: wrow0 + mt·16 + [0, 16)

  const T* qg = static_cast<const T*>(p.q.data) + b * p.q.sB + h * p.q.sH;
  const T* kg = static_cast<const T*>(p.k.data) + b * p.k.sB + h * p.k.sH;
  const T* vg = static_cast<const T*>(p.v.data) + b * p.v.sB + h * p.v.sH;
  const uint8_t* kv = p.keyValid ? p.keyValid + int64_t(b) * p.Nk : nullptr;

  // Keys this block may see (kEnd), keys every row of the block sees (kAll: tiles below it need no
  // mask unless keyValid is given), and each of this thread's rows' limit.
  int kEnd = p.Nk, kAll = p.Nk;
  int lim[kMT][2];
  for (int mt = 0; mt < kMT; ++mt) lim[mt][0] = lim[mt][1] = p.Nk;
  if (p.causalChunk > 0) {
    const int64_t C = p.causalChunk;
    const int64_t last = int64_t(p.q0) + min(p.Nq, row0 + kBM) - 1;
    kEnd = int(min(int64_t(p.Nk), (last / C + 1) * C));
    kAll = int(min(int64_t(p.Nk), ((int64_t(p.q0) + row0) / C + 1) * C));
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int64_t pos = int64_t(p.q0) + wrow0 + mt * 16 + g + 8 * hh;
        lim[mt][hh] = int(min(int64_t(p.Nk), (pos / C + 1) * C));
      }
  }
  const int nTiles = (kEnd + kBN - 1) / kBN;

  // K/V tile loader: thread tid copies 16-byte chunk (tid % (D/8)) of rows tid / (D/8) + i·kRowStep;
  // row pointers advance by a precomputed stride (few live registers next to the accumulators).
  constexpr int kChunksPerRow = D / 8, kRowStep = kThreads / kChunksPerRow;
  constexpr int kRowsPerThread = kBN / kRowStep;
  static_assert(kBN % kRowStep == 0, "K/V tile rows must divide over the threads");
  const int ldRow = threadIdx.x / kChunksPerRow, ldCol = (threadIdx.x % kChunksPerRow) * 8;
  const T* kThr = kg + int64_t(ldRow) * p.k.sS + ldCol;
  const T* vThr = vg + int64_t(ldRow) * p.v.sS + ldCol;
  const int sOff = ldRow * LD + ldCol;
  auto load_kv = [&](int t) {
    const int base = t * kBN, buf = t % kStages;
    const T* ks = kThr + int64_t(base) * p.k.sS;
    const T* vs = vThr + int64_t(base) * p.v.sS;
    T* kd = sK + buf * kBN * LD + sOff;
    T* vd = sV + buf * kBN * LD + sOff;
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) {
      const bool ok = base + ldRow + i * kRowStep < kEnd;
      cp_async16(kd + i * kRowStep * LD, ok ? ks : kg, ok);
      cp_async16(vd + i * kRowStep * LD, ok ? vs : vg, ok);
      ks += int64_t(kRowStep) * p.k.sS;
      vs += int64_t(kRowStep) * p.v.sS;
    }
  };

  // Ring: commit group j holds tile j (group 0 also Q); groups are committed even when empty so that
  // at the top of iteration t, wait_group<kStages − 2> means tile t has landed.
  load_tile_async<kBM, D, kThreads>(sQ, qg, [&](int r) -> const T* {
    return row0 + r < p.Nq ? qg + int64_t(row0 + r) * p.q.sS : nullptr;
  });
#pragma unroll
  for (int j = 0; j < kStages - 1; ++j) {
    if (j < nTiles) load_kv(j);
    cp_async_commit();
  }

  float O[kMT][D / 8][4];
  LazySoftmax<kBN, kEntropy> sm[kMT];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
    zero_acc<D>(O[mt]);
    sm[mt].init();
  }
  const float scale2 = p.scale * kLog2e;
  // Tiles past kAll take the masked path; so does every tile with keyValid, or when scale2 ≤ 0 (the
  // fused path takes the max of raw scores, which scales to the max of logits only for scale2 > 0).
  if (kv != nullptr || !(scale2 > 0.f)) kAll = 0;
  const T* sQw = sQ + warp * 16 * kMT * LD;

  for (int t = 0; t < nTiles; ++t) {
    cp_async_wait<kStages - 2>();
    // Tile t is visible to all; every warp is done with tile t − 1, whose slot the next load reuses.
    __syncthreads();
    if (t + kStages - 1 < nTiles) load_kv(t + kStages - 1);
    cp_async_commit();
    const int buf = t % kStages;

    float S[kMT][kBN / 8][4];
    warp_gemm_abt_mt<D, kBN, kMT, T>(S, sQw, sK + buf * kBN * LD, lane);
    uint32_t pa[kMT][kBN / 16][4];
    if ((t + 1) * kBN > kAll) {  // masked tile: key tail, causal edge, keyValid or scale2 ≤ 0
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) mask_scale_tile<kBN>(S[mt], t * kBN, qd, lim[mt], kv, scale2);
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        float alpha[2];
        if (sm[mt].template update<false>(S[mt], scale2, alpha)) rescale_rows<D>(O[mt], alpha);
        c_to_a_frags<kBN, T>(pa[mt], S[mt]);
      }
    } else {
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        float alpha[2];
        if (sm[mt].template update<true>(S[mt], scale2, alpha)) rescale_rows<D>(O[mt], alpha);
        c_to_a_frags<kBN, T>(pa[mt], S[mt]);
      }
    }
    warp_gemm_ab_mt<D, kBN, kMT, T>(O, pa, sV + buf * kBN * LD, lane);
  }
  cp_async_wait<0>();

  T* og = static_cast<T*>(p.o.data) + b * p.o.sB + h * p.o.sH;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
    sm[mt].finalize();
    float inv[2];
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) inv[hh] = sm[mt].l[hh] > 0.f ? 1.f / sm[mt].l[hh] : 0.f;
    const int mrow0 = wrow0 + mt * 16;
    store_rows<D, T>(O[mt], inv, lane, [&](int r) -> T* {
      return mrow0 + r < p.Nq ? og + int64_t(mrow0 + r) * p.o.sS : nullptr;
    });
    store_row_stats(sm[mt], p, b, h, mrow0, g, qd);
  }
}

template <typename T, int D, bool kEntropy, int kBN, int kStages>
Status launch_dense_tiled(const DenseParams& p, cudaStream_t s) {
  auto kernel = dense_attention_kernel<T, D, kEntropy, kBN, kStages>;
  const size_t smem = dense_smem_bytes<D, T, kBN, kStages>();
  Status st = prepare_smem(kernel, smem, "dense_attention_kernel");
  if (!st.ok) return st;
  dim3 grid((p.Nq + kBM - 1) / kBM, p.H, p.B);
  kernel<<<grid, kThreads, smem, s>>>(p);
  return launch_status("dense_attention_kernel");
}

// Two CTAs of `bytes` (plus the 1 KB the runtime reserves per CTA) fit in one SM's shared memory.
inline bool two_ctas_fit(size_t bytes) {
  int dev = 0, perSm = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&perSm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev) != cudaSuccess) {
    cudaGetLastError();  // leave no sticky error; the launch path reports real ones
    return false;
  }
  return 2 * (bytes + 1024) <= static_cast<size_t>(perSm);
}

template <typename T, int D, bool kEntropy>
Status launch_dense(const DenseParams& p, cudaStream_t s) {
  constexpr int kBN = dense_bn<D>();
  if (kBN > kBNSmall && (MONARCH_DENSE_FORCE_SMALL || !two_ctas_fit(dense_smem_bytes<D, T, kBN, kStagesMain>())))
    return launch_dense_tiled<T, D, kEntropy, kBNSmall, kStagesSmall>(p, s);
  return launch_dense_tiled<T, D, kEntropy, kBN, kStagesMain>(p, s);
}

}  // namespace

Status dense(const DenseParams& p, Stream stream) {
  if (p.B < 0 || p.H < 0 || p.Nq < 0 || p.Nk < 0)
    return Status::Error("dense_attention_kernel: negative size");
  if (p.B == 0 || p.H == 0 || p.Nq == 0) return Status::Ok();
  if (p.H > 65535 || p.B > 65535)
    return Status::Error("dense_attention_kernel: B and H must be at most 65535 (grid limit)");
  if (p.dtype == kF32) return fp32::dense(p, static_cast<cudaStream_t>(stream));
  if (!act_rows_aligned16(p.q) || !act_rows_aligned16(p.k) || !act_rows_aligned16(p.v) ||
      !act_rows_aligned16(p.o))
    return Status::Error(
        "dense_attention_kernel: q, k, v, o need 16-byte aligned rows (base aligned, strides multiples of 8)");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  // sm_90a: the wgmma/TMA kernel; a layout its tensor maps refuse falls through to the mma.sync one.
  if (dense_hopper_applies(p)) {
    Status hs = dense_hopper(p, s);
    if (hs.ok || hs.message.find("TMA tensor map") == std::string::npos) return hs;
  }
  const bool entropy = p.entropy != nullptr;
  return dispatch_dtype_dim(p.dtype, p.D, [&](auto tt, auto dd) -> Status {
    using T = typename decltype(tt)::type;
    constexpr int D = decltype(dd)::value;
    return entropy ? launch_dense<T, D, true>(p, s) : launch_dense<T, D, false>(p, s);
  });
}

}  // namespace cuda
}  // namespace monarch
