// dense_attention_hopper.cu — dense softmax attention forward for sm_90a (Hopper): the same results
// as dense_attention.cu (masks, LSE, online entropy, NaN propagation: dense_softmax.cuh) with the
// matrix products on wgmma and the tiles moved by the copy engine.
//
// CTA: three warpgroups, one per role (warp specialisation).
//   producer (warpgroup 0, one thread): bulk tensor copies (TMA) of the CTA's Q block once, then K
//     and V tiles of kBN keys into a kStages-deep ring; each slot has a "full" mbarrier (completed
//     by the copy's byte count) and an "empty" one (completed when both consumers are done with it).
//     K and V of a tile have separate slots' barriers, so the next K lands while V is in use.
//   consumers (warpgroups 1, 2): 64 query rows each. Per key tile: S = Q·Kᵀ (wgmma, both operands in
//     shared memory), release K, mask + streaming softmax in registers (the FlashAttention-2 C→A
//     fragment trick: the wgmma accumulator layout is the mma.m16n8k16 one per warp), O += P·V
//     (wgmma, P from registers, V MN-major in shared memory), release V.
// The producer gives its registers to the consumers (setmaxnreg): 24 vs 240 per thread.
// Shared memory: Q [D/64][kBM][64], K and V [kStages][D/64][kBN][64], all 128-byte swizzled
// (hopper.cuh), plus the mbarriers.
#include <monarch/monarch_cuda.h>

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

constexpr int kBM = 128;  // query rows per CTA: 2 consumer warpgroups × 64
constexpr int kBN = 128;  // keys per tile
constexpr int kThreads = 384;

template <int D>
constexpr int hopper_stages() {
  return D == 128 ? 2 : 4;
}

template <int D>
struct HopperSmem {
  static constexpr int kAtoms = D / 64;             // 64-column swizzle atoms per row
  static constexpr int kQBytes = kBM * D * 2;
  static constexpr int kTileBytes = kBN * D * 2;    // one K or one V tile
  static constexpr int kStages = hopper_stages<D>();
  static constexpr int kBarOffset = kQBytes + 2 * kStages * kTileBytes;
  static constexpr int kBars = 1 + 4 * kStages;     // Q full; K full/empty, V full/empty per slot
  static constexpr size_t kBytes = size_t(kBarOffset) + kBars * 8 + 1024;  // + alignment slack
};

template <typename T, int D, bool kEntropy>
__global__ void __launch_bounds__(kThreads, 1)
    dense_attention_hopper_kernel(const __grid_constant__ CUtensorMap tmQ, const __grid_constant__ CUtensorMap tmK,
                                  const __grid_constant__ CUtensorMap tmV, DenseParams p) {
#if MONARCH_SM90A
  using L = HopperSmem<D>;
  constexpr int kStages = L::kStages;
  extern __shared__ unsigned char smem_raw[];
  unsigned char* base = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  T* sQ = reinterpret_cast<T*>(base);
  T* sK = reinterpret_cast<T*>(base + L::kQBytes);
  T* sV = reinterpret_cast<T*>(base + L::kQBytes + kStages * L::kTileBytes);
  uint64_t* bars = reinterpret_cast<uint64_t*>(base + L::kBarOffset);
  uint64_t* fullQ = bars;
  uint64_t* fullK = bars + 1;
  uint64_t* emptyK = fullK + kStages;
  uint64_t* fullV = emptyK + kStages;
  uint64_t* emptyV = fullV + kStages;

  const int qb = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int wg = threadIdx.x / 128;
  const int row0 = qb * kBM;

  // Keys this block may see (kEnd) and keys every row of it sees (kAll); as dense_attention.cu.
  int kEnd = p.Nk, kAll = p.Nk;
  if (p.causalChunk > 0) {
    const int64_t C = p.causalChunk;
    const int64_t last = int64_t(p.q0) + min(p.Nq, row0 + kBM) - 1;
    kEnd = int(min(int64_t(p.Nk), (last / C + 1) * C));
    kAll = int(min(int64_t(p.Nk), ((int64_t(p.q0) + row0) / C + 1) * C));
  }
  const int nTiles = (kEnd + kBN - 1) / kBN;

  if (threadIdx.x == 0) {
    mbar_init(fullQ, 1);
    for (int s = 0; s < kStages; ++s) {
      mbar_init(fullK + s, 1);
      mbar_init(fullV + s, 1);
      mbar_init(emptyK + s, 256);
      mbar_init(emptyV + s, 256);
    }
    mbar_fence_init();
  }
  __syncthreads();

  if (wg == 0) {  // ---- producer ----
    regs_dealloc<24>();
    if (threadIdx.x == 0) {
      tma_prefetch_map(&tmQ);
      tma_prefetch_map(&tmK);
      tma_prefetch_map(&tmV);
      mbar_arrive_expect_tx(fullQ, L::kQBytes);
#pragma unroll
      for (int a = 0; a < L::kAtoms; ++a) tma_load_4d(sQ + a * kBM * 64, &tmQ, fullQ, a * 64, row0, h, b);
      for (int t = 0; t < nTiles; ++t) {
        const int s = t % kStages;
        const uint32_t ph = (t / kStages) & 1;
        mbar_wait(emptyK + s, ph ^ 1);
        mbar_arrive_expect_tx(fullK + s, L::kTileBytes);
#pragma unroll
        for (int a = 0; a < L::kAtoms; ++a)
          tma_load_4d(sK + (s * L::kAtoms + a) * kBN * 64, &tmK, fullK + s, a * 64, t * kBN, h, b);
        mbar_wait(emptyV + s, ph ^ 1);
        mbar_arrive_expect_tx(fullV + s, L::kTileBytes);
#pragma unroll
        for (int a = 0; a < L::kAtoms; ++a)
          tma_load_4d(sV + (s * L::kAtoms + a) * kBN * 64, &tmV, fullV + s, a * 64, t * kBN, h, b);
      }
    }
    return;
  }

  // ---- consumers ----
  regs_alloc<240>();
  const int c = wg - 1;  // rows row0 + 64c + [0, 64)
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  const int g = lane / 4, qd = lane % 4;
  const int wrow0 = row0 + c * 64 + warp * 16;  // this warp's 16 rows
  const uint8_t* kv = p.keyValid ? p.keyValid + int64_t(b) * p.Nk : nullptr;

  int lim[2] = {p.Nk, p.Nk};
  if (p.causalChunk > 0) {
    const int64_t C = p.causalChunk;
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int64_t pos = int64_t(p.q0) + wrow0 + g + 8 * hh;
      lim[hh] = int(min(int64_t(p.Nk), (pos / C + 1) * C));
    }
  }
  const float scale2 = p.scale * kLog2e;
  if (kv != nullptr || !(scale2 > 0.f)) kAll = 0;

  const uint32_t qAddr = smem_addr(sQ) + c * 64 * 128;  // this warpgroup's 64 rows of atom 0
  const uint32_t kAddr = smem_addr(sK), vAddr = smem_addr(sV);

  float O[D / 8][4];
  float S[kBN / 8][4];
  zero_acc<D>(O);
#pragma unroll
  for (int n = 0; n < kBN / 8; ++n) S[n][0] = S[n][1] = S[n][2] = S[n][3] = 0.f;
  LazySoftmax<kBN, kEntropy> sm;
  sm.init();

  mbar_wait(fullQ, 0);
  for (int t = 0; t < nTiles; ++t) {
    const int s = t % kStages;
    const uint32_t ph = (t / kStages) & 1;
    mbar_wait(fullK + s, ph);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const uint32_t atom = kk / 4, off = (kk % 4) * 32;
      const uint64_t da = desc_kmajor(qAddr + atom * kBM * 128 + off);
      const uint64_t db = desc_kmajor(kAddr + (s * L::kAtoms + atom) * kBN * 128 + off);
      Wgmma<T, kBN>::ss(S, da, db, kk > 0 ? 1 : 0);
    }
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs(S);
    mbar_arrive(emptyK + s);

    uint32_t pa[kBN / 16][4];
    float alpha[2];
    if ((t + 1) * kBN > kAll) {  // masked tile: key tail, causal edge, keyValid or scale2 ≤ 0
#pragma unroll
      for (int n = 0; n < kBN / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = t * kBN + n * 8 + 2 * qd + (e & 1);
          const bool ok = col < lim[e >> 1] && (kv == nullptr || kv[col] != 0);
          S[n][e] = ok ? S[n][e] * scale2 : -INFINITY;
        }
      if (sm.template update<false>(S, scale2, alpha)) rescale_rows<D>(O, alpha);
    } else {
      if (sm.template update<true>(S, scale2, alpha)) rescale_rows<D>(O, alpha);
    }
    c_to_a_frags<kBN, T>(pa, S);

    mbar_wait(fullV + s, ph);
    wgmma_fence();
#pragma unroll
    for (int kt = 0; kt < kBN / 16; ++kt) {
      const uint64_t dv = desc_mnmajor(vAddr + s * L::kTileBytes + kt * 16 * 128, kBN * 128);
      Wgmma<T, D>::rs(O, pa[kt], dv);
    }
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs(O);
    mbar_arrive(emptyV + s);
  }

  T* og = static_cast<T*>(p.o.data) + b * p.o.sB + h * p.o.sH;
  sm.finalize();
  float inv[2];
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) inv[hh] = sm.l[hh] > 0.f ? 1.f / sm.l[hh] : 0.f;
  store_rows<D, T>(O, inv, lane, [&](int r) -> T* {
    return wrow0 + r < p.Nq ? og + int64_t(wrow0 + r) * p.o.sS : nullptr;
  });
  if (qd == 0) {
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int n = wrow0 + g + 8 * hh;
      if (n >= p.Nq) continue;
      const int64_t idx = (int64_t(b) * p.H + h) * p.Nq + n;
      if (p.lse) p.lse[idx] = sm.lse(hh);
      if (kEntropy && p.entropy) {
        const float ne = sm.neg_entropy(hh);
        p.entropy[idx] = ne != ne ? ne : fmaxf(0.f, -ne);  // ≥ 0, as the CPU; NaN stays NaN
      }
    }
  }
#else
  static_assert(HopperSmem<D>::kAtoms >= 1, "head dim is a multiple of 64");
#endif
}

template <typename T, int D, bool kEntropy>
Status launch(const DenseParams& p, cudaStream_t s) {
  CUtensorMap mq, mk, mv;
  Status st = tma::encode_rows(&mq, p.q, p.dtype, p.B, p.Nq, p.H, D, kBM);
  if (st.ok) st = tma::encode_rows(&mk, p.k, p.dtype, p.B, p.Nk, p.H, D, kBN);
  if (st.ok) st = tma::encode_rows(&mv, p.v, p.dtype, p.B, p.Nk, p.H, D, kBN);
  if (!st.ok) return Status::Error("dense_attention_hopper_kernel: " + st.message);
  auto kernel = dense_attention_hopper_kernel<T, D, kEntropy>;
  const size_t smem = HopperSmem<D>::kBytes;
  st = prepare_smem(kernel, smem, "dense_attention_hopper_kernel");
  if (!st.ok) return st;
  dim3 grid((p.Nq + kBM - 1) / kBM, p.H, p.B);
  kernel<<<grid, kThreads, smem, s>>>(mq, mk, mv, p);
  return launch_status("dense_attention_hopper_kernel");
}

// The build holds sm_90a code (the architecture list CMake compiled for names 90a).
constexpr bool build_has_sm90a() {
#ifdef MONARCH_CUDA_ARCHS
  const char* s = MONARCH_CUDA_ARCHS;
  for (int i = 0; s[i] && s[i + 1] && s[i + 2]; ++i)
    if (s[i] == '9' && s[i + 1] == '0' && s[i + 2] == 'a') return true;
#endif
  return false;
}

}  // namespace

bool dense_hopper_applies(const DenseParams& p) {
  if (!build_has_sm90a() || (p.dtype != kF16 && p.dtype != kBF16) || (p.D != 64 && p.D != 128)) return false;
  if (p.Nk < 1 || p.Nq < 1) return false;
  static const int mode = [] {
    const char* e = std::getenv("MONARCH_DENSE_KERNEL");  // "mma": the sm_80 kernel everywhere (A/B runs)
    return e && std::string(e) == "mma" ? 0 : 1;
  }();
  if (mode == 0) return false;
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major == 9 && minor == 0;
}

Status dense_hopper(const DenseParams& p, cudaStream_t s) {
  const bool entropy = p.entropy != nullptr;
  return dispatch_dtype_dim(p.dtype, p.D, [&](auto tt, auto dd) -> Status {
    using T = typename decltype(tt)::type;
    constexpr int D = decltype(dd)::value;
    return entropy ? launch<T, D, true>(p, s) : launch<T, D, false>(p, s);
  });
}

}  // namespace cuda
}  // namespace monarch
