// dense_attention.cu — dense softmax attention forward, FlashAttention-2 style (ALGORITHMS.md §0),
// with the online-entropy accumulator of §C.3 and optional per-row LSE / entropy outputs.
//
// Tiling: one CTA of 4 warps per (query block of kBM = 64 rows, head, batch); warp w owns query rows
// [16w, 16w+16) and keeps their Q fragments in registers. Key/value tiles of kBN = 64 rows stream
// through a double-buffered cp.async pipeline in shared memory; S = Q·Kᵀ and O += P·V run on
// mma.sync m16n8k16 with fp32 accumulators; P never leaves registers.
// Masks: key tail (Nk), keyValid, block-causal (query at position q0 + n sees keys
// [0, ((q0+n)/C + 1)·C)); the key loop stops at the last tile any row of the block may see.
#include "monarch_cuda.h"
#include "online_softmax.cuh"

namespace monarch {
namespace cuda {
namespace {

using namespace detail;

constexpr int kBM = 64;        // query rows per CTA: 4 warps × 16 (one m16 tile per warp)
constexpr int kBN = 64;        // keys per tile; S fragment = 32 fp32 registers per thread
constexpr int kThreads = 128;

template <int D, typename T>
constexpr size_t dense_smem_bytes() {
  return size_t(kBM + 4 * kBN) * Smem<D>::kLd * sizeof(T);  // Q + double-buffered K and V
}

template <typename T, int D, bool kEntropy>
__global__ void __launch_bounds__(kThreads, 2) dense_attention_kernel(DenseParams p) {
  constexpr int LD = Smem<D>::kLd;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // [kBM][LD]
  T* sK = sQ + kBM * LD;                   // [2][kBN][LD]
  T* sV = sK + 2 * kBN * LD;               // [2][kBN][LD]

  const int qb = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, qd = lane % 4;
  const int row0 = qb * kBM;

  const T* qg = static_cast<const T*>(p.q.data) + b * p.q.sB + h * p.q.sH;
  const T* kg = static_cast<const T*>(p.k.data) + b * p.k.sB + h * p.k.sH;
  const T* vg = static_cast<const T*>(p.v.data) + b * p.v.sB + h * p.v.sH;
  const uint8_t* kv = p.keyValid ? p.keyValid + int64_t(b) * p.Nk : nullptr;

  // Keys this block may see, and each of this thread's two rows' limit.
  int kEnd = p.Nk;
  int lim[2] = {p.Nk, p.Nk};
  if (p.causalChunk > 0) {
    const int64_t C = p.causalChunk;
    const int64_t last = int64_t(p.q0) + min(p.Nq, row0 + kBM) - 1;
    kEnd = int(min(int64_t(p.Nk), (last / C + 1) * C));
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int64_t pos = int64_t(p.q0) + row0 + warp * 16 + g + 8 * hh;
      lim[hh] = int(min(int64_t(p.Nk), (pos / C + 1) * C));
    }
  }
  const int nTiles = (kEnd + kBN - 1) / kBN;

  auto load_kv = [&](int t, int buf) {
    const int base = t * kBN;
    load_tile_async<kBN, D, kThreads>(sK + buf * kBN * LD, kg, [&](int r) -> const T* {
      return base + r < kEnd ? kg + int64_t(base + r) * p.k.sS : nullptr;
    });
    load_tile_async<kBN, D, kThreads>(sV + buf * kBN * LD, vg, [&](int r) -> const T* {
      return base + r < kEnd ? vg + int64_t(base + r) * p.v.sS : nullptr;
    });
  };

  load_tile_async<kBM, D, kThreads>(sQ, qg, [&](int r) -> const T* {
    return row0 + r < p.Nq ? qg + int64_t(row0 + r) * p.q.sS : nullptr;
  });
  if (nTiles > 0) load_kv(0, 0);
  cp_async_commit();

  uint32_t qa[D / 16][4];
  float O[D / 8][4];
  zero_acc<D>(O);
  OnlineSoftmax<kBN, kEntropy> sm;
  sm.init();
  const float scale2 = p.scale * kLog2e;

  for (int t = 0; t < nTiles; ++t) {
    const int buf = t & 1;
    if (t + 1 < nTiles) {
      load_kv(t + 1, buf ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (t == 0) load_a_frags<D>(qa, sQ + warp * 16 * LD, lane);

    float S[kBN / 8][4];
    warp_gemm_abt<D, kBN, T>(S, qa, sK + buf * kBN * LD, lane);
#pragma unroll
    for (int n = 0; n < kBN / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = t * kBN + n * 8 + 2 * qd + (e & 1);
        const bool ok = c < lim[e >> 1] && (kv == nullptr || kv[c] != 0);
        S[n][e] = ok ? S[n][e] * scale2 : -INFINITY;
      }
    }
    float alpha[2];
    sm.update(S, alpha);
    rescale_rows<D>(O, alpha);
    uint32_t pa[kBN / 16][4];
    c_to_a_frags<kBN, T>(pa, S);
    warp_gemm_ab<D, kBN, T>(O, pa, sV + buf * kBN * LD, lane);
    __syncthreads();
  }
  cp_async_wait<0>();

  sm.finalize();
  float inv[2];
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) inv[hh] = sm.l[hh] > 0.f ? 1.f / sm.l[hh] : 0.f;
  T* og = static_cast<T*>(p.o.data) + b * p.o.sB + h * p.o.sH;
  const int wrow0 = row0 + warp * 16;
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
      if (kEntropy && p.entropy) p.entropy[idx] = fmaxf(0.f, -sm.neg_entropy(hh));  // ≥ 0, as the CPU
    }
  }
}

template <typename T, int D, bool kEntropy>
Status launch_dense(const DenseParams& p, cudaStream_t s) {
  auto kernel = dense_attention_kernel<T, D, kEntropy>;
  const size_t smem = dense_smem_bytes<D, T>();
  Status st = prepare_smem(kernel, smem, "dense_attention_kernel");
  if (!st.ok) return st;
  dim3 grid((p.Nq + kBM - 1) / kBM, p.H, p.B);
  kernel<<<grid, kThreads, smem, s>>>(p);
  return launch_status("dense_attention_kernel");
}

}  // namespace

Status dense(const DenseParams& p, Stream stream) {
  if (p.B < 0 || p.H < 0 || p.Nq < 0 || p.Nk < 0)
    return Status::Error("dense_attention_kernel: negative size");
  if (p.B == 0 || p.H == 0 || p.Nq == 0) return Status::Ok();
  if (p.H > 65535 || p.B > 65535)
    return Status::Error("dense_attention_kernel: B and H must be at most 65535 (grid limit)");
  if (!act_rows_aligned16(p.q) || !act_rows_aligned16(p.k) || !act_rows_aligned16(p.v) ||
      !act_rows_aligned16(p.o))
    return Status::Error(
        "dense_attention_kernel: q, k, v, o need 16-byte aligned rows (base aligned, strides multiples of 8)");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const bool entropy = p.entropy != nullptr;
  return dispatch_dtype_dim(p.dtype, p.D, [&](auto tt, auto dd) -> Status {
    using T = typename decltype(tt)::type;
    constexpr int D = decltype(dd)::value;
    return entropy ? launch_dense<T, D, true>(p, s) : launch_dense<T, D, false>(p, s);
  });
}

}  // namespace cuda
}  // namespace monarch
